"""The recognizer's test path as a library function: inputs -> views -> chunked forward -> averaging.

Per video (a video file or a frame directory): test-clip frame numbers (MMAction2 ``SampleFrames``
test mode), decode, resize the short side, crop (center / three / ten), then the recognizer scores
every view in at most ``max_testing_views`` views per forward and ``average_clips`` reduces them.
Views of ``batch_videos`` videos share forwards; the next videos decode in a background thread
while the model runs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lfbtool.choices import AverageClips, CropMode
from lfbtool.data.frames import ClipSource, FrameDirectory, VideoFile
from lfbtool.data.preprocess import resize_clip, resized_shape
from lfbtool.data.views import (
    NUM_CROPS,
    ClipPlan,
    crop_major,
    cut_crops,
    plan_clips,
    resolve_crop_size,
    windows_for,
)
from lfbtool.errors import LfbError
from lfbtool.models.recognizers import BaseRecognizer, average_clip, check_max_testing_views

KINETICS400 = "kinetics400"


@dataclass(frozen=True)
class RecognizeOptions:
    """What the user may set; ``None`` takes the recognizer's test defaults."""

    num_clips: int | None = None
    clip_len: int | None = None
    frame_interval: int | None = None
    short_side: int | None = None
    crop_size: int | None = None
    crops: CropMode | str = CropMode.center
    average_clips: AverageClips | str = AverageClips.score
    max_testing_views: int | None = None
    batch_videos: int = 1
    template: str = "img_{:05d}.jpg"
    start_index: int = 1


@dataclass(frozen=True)
class TestSettings:
    """Options resolved against the recognizer's defaults."""

    clip_len: int
    frame_interval: int
    num_clips: int
    short_side: int
    crop_size: int
    crops: CropMode
    average_clips: AverageClips
    max_testing_views: int | None
    batch_videos: int
    template: str
    start_index: int

    @property
    def num_crops(self) -> int:
        return NUM_CROPS[self.crops]

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops


@dataclass
class VideoResult:
    """One video's scores: ``[C]`` averaged, or ``[views, C]`` per view when average_clips is none."""

    input: str
    num_frames: int
    num_views: int
    scores: Tensor
    looped: bool
    notice: str | None


def resolve_settings(recognizer: BaseRecognizer, options: RecognizeOptions) -> TestSettings:
    """Fill unset options from ``recognizer.defaults``; check what MMAction2 would reject."""
    d = recognizer.defaults
    clip_len = options.clip_len if options.clip_len is not None else d.clip_len
    if recognizer.is_2d and clip_len != 1:
        raise LfbError(
            f"{recognizer.name} is a 2D model used TSN-style: --clip-len must be 1, got {clip_len}"
        )
    short_side = options.short_side if options.short_side is not None else d.short_side
    if short_side < 1:
        raise LfbError(f"--short-side must be >= 1, got {short_side}")
    crops = CropMode.parse(options.crops, "--crops")
    average_clips = AverageClips.parse(options.average_clips, "--average-clips")
    if options.batch_videos < 1:
        raise LfbError(f"--batch-videos must be >= 1, got {options.batch_videos}")
    settings = TestSettings(
        clip_len=clip_len,
        frame_interval=options.frame_interval if options.frame_interval is not None else d.frame_interval,
        num_clips=options.num_clips if options.num_clips is not None else d.num_clips,
        short_side=short_side,
        crop_size=resolve_crop_size(crops, options.crop_size, short_side, min(d.crop_size, short_side)),
        crops=crops,
        average_clips=average_clips,
        max_testing_views=check_max_testing_views(options.max_testing_views),
        batch_videos=options.batch_videos,
        template=options.template,
        start_index=options.start_index,
    )
    for flag, value in (
        ("clip-len", clip_len),
        ("frame-interval", settings.frame_interval),
        ("num-clips", settings.num_clips),
    ):
        if value < 1:
            raise LfbError(f"--{flag} must be >= 1, got {value}")
    return settings


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Paths as given, with ``@list.txt`` replaced by its lines (blank lines and ``#`` comments skipped;
    relative paths are relative to the current directory, as in the shell)."""
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        if not text.startswith("@"):
            paths.append(Path(text))
            continue
        listing = Path(text[1:])
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise LfbError(f"{listing}: cannot read input list ({error.strerror or error})") from error
        paths.extend(
            Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
        )
    if not paths:
        raise LfbError("no inputs: give video files, frame directories or @list.txt")
    return paths


def open_input(path: Path, settings: TestSettings) -> ClipSource:
    """A frame directory when ``path`` is a directory, else a video file."""
    if path.is_dir():
        return FrameDirectory(path, template=settings.template, start_index=settings.start_index)
    if not path.exists():
        raise LfbError(f"{path}: no such video file or frame directory")
    return VideoFile(path, start_index=settings.start_index)


def video_views(source: ClipSource, settings: TestSettings) -> tuple[Tensor, ClipPlan]:
    """uint8 views ``[num_crops * num_clips, 3, T, crop, crop]`` (crop-major) of one input."""
    total = source.num_frames
    if total < 1:
        raise LfbError(f"{source.path}: no frames (frame directories must match {settings.template})")
    plan = plan_clips(
        total,
        clip_len=settings.clip_len,
        interval=settings.frame_interval,
        num_clips=settings.num_clips,
        start_index=settings.start_index,
    )
    per_clip = []
    for numbers in plan.numbers:
        frames = source.read(numbers.tolist())
        height, width = int(frames.shape[1]), int(frames.shape[2])
        clip = resize_clip(frames, resized_shape(height, width, settings.short_side))
        per_clip.append(
            cut_crops(clip, windows_for(clip.shape[-2], clip.shape[-1], settings.crop_size, settings.crops))
        )
    return crop_major(per_clip), plan


def _prepare(path: Path, settings: TestSettings) -> tuple[Tensor, ClipPlan]:
    source = open_input(path, settings)
    try:
        return video_views(source, settings)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


@torch.no_grad()
def score_views(
    recognizer: BaseRecognizer, views: Sequence[Tensor], settings: TestSettings
) -> list[Tensor]:
    """Score the views of several videos in shared forwards; one averaged result per video."""
    counts = [int(v.shape[0]) for v in views]
    scores = recognizer.view_scores(torch.cat(list(views), dim=0), settings.max_testing_views).float().cpu()
    return [
        average_clip(part, count, settings.average_clips)[0]
        for part, count in zip(scores.split(counts), counts, strict=True)
    ]


def recognize(
    inputs: Sequence[str | os.PathLike[str]],
    recognizer: BaseRecognizer,
    settings: TestSettings,
    *,
    device: torch.device | str = "cpu",
    on_notice: Callable[[str], None] | None = None,
) -> Iterator[VideoResult]:
    """Yield one :class:`VideoResult` per input, in input order.

    ``on_notice`` receives one-line notices (a video shorter than one clip loops its frames).
    """
    paths = expand_inputs(inputs)
    device = torch.device(device)
    recognizer.eval().to(device)
    lookahead = settings.batch_videos + 1
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfbtool-decode") as pool:
        pending: deque[tuple[Path, Future[tuple[Tensor, ClipPlan]]]] = deque()
        queue = iter(paths)

        def refill() -> None:
            while len(pending) < lookahead:
                path = next(queue, None)
                if path is None:
                    return
                pending.append((path, pool.submit(_prepare, path, settings)))

        refill()
        while pending:
            group = [pending.popleft() for _ in range(min(settings.batch_videos, len(pending)))]
            prepared = [(path, future.result()) for path, future in group]
            refill()
            scores = score_views(recognizer, [views for _, (views, _) in prepared], settings)
            for (path, (views, plan)), score in zip(prepared, scores, strict=True):
                notice = plan.notice(str(path))
                if notice and on_notice is not None:
                    on_notice(notice)
                yield VideoResult(str(path), plan.total, int(views.shape[0]), score, plan.looped, notice)


def load_labels(
    labels: str | None, num_classes: int, categories: Sequence[str] | None = None
) -> list[str] | None:
    """Class names: a file with one name per line (its line count must equal ``num_classes``), the
    word ``kinetics400`` for torchvision's Kinetics-400 names, else the weights' categories."""
    if labels is None:
        return list(categories) if categories is not None else None
    if labels == KINETICS400 and not Path(labels).exists():
        from torchvision.models.video import R3D_18_Weights

        names = list(R3D_18_Weights.KINETICS400_V1.meta["categories"])
        source = "the kinetics400 label set"
    else:
        try:
            names = Path(labels).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise LfbError(f"{labels}: cannot read labels file ({error.strerror or error})") from error
        while names and not names[-1].strip():
            names.pop()
        names = [name.strip() for name in names]
        source = labels
    if len(names) != num_classes:
        raise LfbError(
            f"{source}: {len(names)} labels but the model has {num_classes} classes (one label per line)"
        )
    return names


def top_k(scores: Tensor, k: int) -> list[tuple[int, float]]:
    """``(class index, score)`` of the ``k`` highest scores (per-view scores are averaged first)."""
    if scores.ndim == 2:
        scores = scores.mean(dim=0)
    values, indices = scores.topk(min(k, scores.shape[-1]))
    return [(int(i), float(v)) for i, v in zip(indices, values, strict=True)]
