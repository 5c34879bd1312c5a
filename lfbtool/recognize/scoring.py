"""The recognizer's test path as a library function: inputs -> views -> chunked forward -> averaging.

Per video (a video file or a frame directory): test-clip frame numbers (MMAction2 ``SampleFrames``
test mode), decode, resize the short side, crop (center / three / ten), then the recognizer scores
every view in at most ``max_testing_views`` views per forward and ``average_clips`` reduces them.
Views of ``batch_videos`` videos share forwards; the next videos decode in a background thread
while the model runs. An input whose uint8 views would exceed ``memory_budget`` bytes is decoded and
scored in groups of clips instead (same per-view scores, same averaging).

A bad input (unreadable, no frames, too short with ``loop=False``) raises, or with ``keep_going``
becomes a :class:`VideoResult` with ``error`` set and the loop goes on. Opening inputs and decoding
their views is :mod:`lfbtool.recognize.inputs`; running a whole test set with result files, resume
and torchrun is :mod:`lfbtool.recognize.job`.
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

from lfbtool.choices import AverageClips, CropMode, Precision
from lfbtool.data.frames import close_source
from lfbtool.data.views import NUM_CROPS, ClipPlan, resolve_crop_size
from lfbtool.errors import LfbError
from lfbtool.models.recognizers import BaseRecognizer, average_clip, check_max_testing_views
from lfbtool.recognize.inputs import decode_clips, expand_inputs, open_input, plan_for, video_views
from lfbtool.recognize.labels import KINETICS400, load_labels, top_k
from lfbtool.runtime.precision import check_precision

#: Default bound on one input's decoded uint8 views (``--memory-budget``).
DEFAULT_MEMORY_BUDGET = 1 << 30

__all__ = [
    "KINETICS400", "RecognizeOptions", "TestSettings", "VideoResult", "expand_inputs", "load_labels", "open_input",
    "recognize", "resolve_settings", "score_paths", "top_k", "video_views",
]

@dataclass(frozen=True)
class RecognizeOptions:
    """What the user may set; ``None`` takes the recognizer's test defaults."""

    num_clips: int | None = None
    clip_len: int | None = None
    frame_interval: int | None = None
    short_side: int | None = None
    crop_size: int | None = None
    crops: CropMode | str | None = None  # None: the recognizer's (``defaults.crops``)
    average_clips: AverageClips | str | None = None  # None: the recognizer's (``defaults.average_clips``)
    max_testing_views: int | None = None
    batch_videos: int = 1
    template: str = "img_{:05d}.jpg"
    start_index: int = 1
    loop: bool = True
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    precision: Precision | str = Precision.fp32


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
    loop: bool = True
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    precision: Precision = Precision.fp32

    @property
    def num_crops(self) -> int:
        return NUM_CROPS[self.crops]

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    @property
    def clips_per_group(self) -> int:
        """Clips decoded together so that their uint8 views stay within ``memory_budget`` (at least 1)."""
        per_clip = self.num_crops * 3 * self.clip_len * self.crop_size * self.crop_size
        return max(1, min(self.num_clips, self.memory_budget // per_clip))


@dataclass
class VideoResult:
    """One input's outcome, ``index`` its position in the inputs given.

    ``scores``: ``[C]`` averaged, or ``[views, C]`` per view when average_clips is none.
    ``embeddings`` (when asked for): the classifier's input, ``[D]`` (plain mean over views for score
    and prob) or ``[views, D]``. ``view_scores`` (per-view logits ``[views, C]``, crop-major) and
    ``plan`` (the clips' frame numbers), kept when asked for: Grad-CAM picks its views from them and
    decodes those again. ``error``: why the input failed (then scores is None).
    """

    input: str
    num_frames: int
    num_views: int
    scores: Tensor | None
    looped: bool
    notice: str | None
    index: int = 0
    embeddings: Tensor | None = None
    view_scores: Tensor | None = None
    plan: ClipPlan | None = None
    error: str | None = None


def resolve_settings(recognizer: BaseRecognizer, options: RecognizeOptions) -> TestSettings:
    """Fill unset options from ``recognizer.defaults``; check what MMAction2 would reject."""
    d = recognizer.defaults
    clip_len = options.clip_len if options.clip_len is not None else d.clip_len
    if recognizer.is_2d and clip_len != 1:
        raise LfbError(
            f"{recognizer.name} is a 2D model used TSN-style: --clip-len must be 1, got {clip_len}"
        )
    if recognizer.clip_frames is not None and clip_len != recognizer.clip_frames:  # a fixed position table
        raise LfbError(f"--clip-len {clip_len}: {recognizer.name} takes clips of exactly {recognizer.clip_frames} frames")
    short_side = options.short_side if options.short_side is not None else d.short_side
    if short_side < 1:
        raise LfbError(f"--short-side must be >= 1, got {short_side}")
    crops = CropMode.parse(d.crops if options.crops is None else options.crops, "--crops")
    average_clips = AverageClips.parse(d.average_clips if options.average_clips is None else options.average_clips,
                                       "--average-clips")
    if options.batch_videos < 1:
        raise LfbError(f"--batch-videos must be >= 1, got {options.batch_videos}")
    if options.memory_budget < 1:
        raise LfbError(f"--memory-budget must be >= 1 byte, got {options.memory_budget}")
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
        loop=options.loop,
        memory_budget=options.memory_budget,
        precision=Precision.parse(options.precision, "--precision"),
    )
    for flag, value in (
        ("clip-len", clip_len),
        ("frame-interval", settings.frame_interval),
        ("num-clips", settings.num_clips),
    ):
        if value < 1:
            raise LfbError(f"--{flag} must be >= 1, got {value}")
    return settings


@dataclass
class _Prepared:
    path: Path
    listed: int | None = None  # a rawframes annotation list's frame count
    plan: ClipPlan | None = None
    views: Tensor | None = None  # None with a plan: over the memory budget, decoded in groups when scored
    error: str | None = None


def _prepare(path: Path, settings: TestSettings, keep_going: bool = False, listed: int | None = None) -> _Prepared:
    try:
        source = open_input(path, settings, listed)
        try:
            plan = plan_for(source, settings, listed)
            if settings.clips_per_group < plan.num_clips:
                return _Prepared(path, listed, plan)
            return _Prepared(path, listed, plan,
                             decode_clips(source, plan, settings, range(plan.num_clips)).flatten(0, 1))
        finally:
            close_source(source)
    except LfbError as error:
        if not keep_going:
            raise
        return _Prepared(path, listed, error=str(error))


def _forward(
    recognizer: BaseRecognizer, views: Tensor, settings: TestSettings, embeddings: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-view logits (float32, cpu) and, when asked, per-view embeddings."""
    if embeddings:
        scores, pooled = recognizer.view_embeddings(views, settings.max_testing_views)
        return scores.float().cpu(), pooled.float().cpu()
    return recognizer.view_scores(views, settings.max_testing_views).float().cpu(), None


def _grouped(
    recognizer: BaseRecognizer, item: _Prepared, settings: TestSettings, embeddings: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-view scores of an input over the memory budget: clips decoded and scored group by group,
    reassembled in crop-major view order."""
    assert item.plan is not None
    plan, step = item.plan, settings.clips_per_group
    scores, pooled = [], []
    source = open_input(item.path, settings, item.listed)
    try:
        for start in range(0, plan.num_clips, step):
            crops = decode_clips(source, plan, settings, range(start, min(start + step, plan.num_clips)))
            s, e = _forward(recognizer, crops.flatten(0, 1), settings, embeddings)
            scores.append(s.view(crops.shape[0], crops.shape[1], -1))
            if e is not None:
                pooled.append(e.view(crops.shape[0], crops.shape[1], -1))
    finally:
        close_source(source)
    return torch.cat(scores, dim=1).flatten(0, 1), torch.cat(pooled, dim=1).flatten(0, 1) if embeddings else None


def reduce_views(per_view: Tensor, mode: AverageClips) -> Tensor:
    """One input's per-view scores ``[V, C]`` -> ``[C]`` (``[V, C]`` for none)."""
    return average_clip(per_view, int(per_view.shape[0]), mode)[0]


def reduce_embeddings(per_view: Tensor, mode: AverageClips) -> Tensor:
    """Per-view embeddings ``[V, D]`` -> their plain mean ``[D]`` (score and prob), or as they are (none)."""
    return per_view if mode is AverageClips.none else per_view.mean(dim=0)


@torch.no_grad()
def score_views(
    recognizer: BaseRecognizer, views: Sequence[Tensor], settings: TestSettings
) -> list[Tensor]:
    """Score the views of several videos in shared forwards; one averaged result per video."""
    counts = [int(v.shape[0]) for v in views]
    scores, _ = _forward(recognizer, torch.cat(list(views), dim=0), settings, False)
    return [reduce_views(part, settings.average_clips) for part in scores.split(counts)]


@torch.no_grad()
def _score_group(
    recognizer: BaseRecognizer, group: list[_Prepared], settings: TestSettings, embeddings: bool
) -> list[tuple[Tensor, Tensor | None]]:
    """Per input of ``group`` (all prepared without error): per-view scores and embeddings."""
    whole = [item for item in group if item.views is not None]
    outputs: dict[int, tuple[Tensor, Tensor | None]] = {}
    if whole:
        counts = [int(item.views.shape[0]) for item in whole]  # type: ignore[union-attr]
        scores, pooled = _forward(recognizer, torch.cat([item.views for item in whole]), settings, embeddings)
        pooled_parts = pooled.split(counts) if pooled is not None else [None] * len(whole)
        for item, s, e in zip(whole, scores.split(counts), pooled_parts, strict=True):
            outputs[id(item)] = (s, e)
    for item in group:
        if item.views is None:
            outputs[id(item)] = _grouped(recognizer, item, settings, embeddings)
    return [outputs[id(item)] for item in group]


def recognize(
    inputs: Sequence[str | os.PathLike[str]],
    recognizer: BaseRecognizer,
    settings: TestSettings,
    *,
    device: torch.device | str = "cpu",
    on_notice: Callable[[str], None] | None = None,
    keep_going: bool = False,
    embeddings: bool = False,
    keep_views: bool = False,
) -> Iterator[VideoResult]:
    """Yield one :class:`VideoResult` per input, in input order (``@list.txt`` expanded here).

    ``on_notice`` receives one-line notices (a video shorter than one clip loops its frames).
    ``keep_going``: a bad input yields a result with ``error`` instead of raising. ``embeddings``:
    also return the clip embeddings (one forward gives both). ``keep_views``: also return the per-view
    scores and the clip plan (what Grad-CAM chooses its views from).
    """
    return score_paths(expand_inputs(inputs), recognizer, settings, device=device, on_notice=on_notice,
                       keep_going=keep_going, embeddings=embeddings, keep_views=keep_views)


def score_paths(
    paths: Sequence[Path],
    recognizer: BaseRecognizer,
    settings: TestSettings,
    *,
    device: torch.device | str = "cpu",
    on_notice: Callable[[str], None] | None = None,
    keep_going: bool = False,
    embeddings: bool = False,
    keep_views: bool = False,
    listed_frames: Sequence[int | None] | None = None,
) -> Iterator[VideoResult]:
    """:func:`recognize` over paths already expanded (never expanded again); ``listed_frames``: per path
    the frame count a rawframes annotation list gives (None: count the frames)."""
    listed = list(listed_frames) if listed_frames is not None else [None] * len(paths)
    device = torch.device(device)
    recognizer.eval().to(device).set_precision(check_precision(settings.precision, device))
    lookahead = settings.batch_videos + 1
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfbtool-decode") as pool:
        pending: deque[tuple[int, Future[_Prepared]]] = deque()
        queue = iter(enumerate(paths))

        def refill() -> None:
            while len(pending) < lookahead:
                item = next(queue, None)
                if item is None:
                    return
                pending.append((item[0], pool.submit(_prepare, item[1], settings, keep_going, listed[item[0]])))

        refill()
        while pending:
            group = [pending.popleft() for _ in range(min(settings.batch_videos, len(pending)))]
            prepared = [(index, future.result()) for index, future in group]
            refill()
            good = [item for _, item in prepared if item.error is None]
            outputs = dict(zip(map(id, good), _score_group(recognizer, good, settings, embeddings), strict=True))
            for index, item in prepared:
                if item.error is not None:
                    yield VideoResult(str(item.path), 0, 0, None, False, None, index=index, error=item.error)
                    continue
                assert item.plan is not None
                per_view, pooled = outputs[id(item)]
                notice = item.plan.notice(str(item.path))
                if notice and on_notice is not None:
                    on_notice(notice)
                yield VideoResult(
                    str(item.path), item.plan.total, int(per_view.shape[0]),
                    reduce_views(per_view, settings.average_clips), item.plan.looped, notice, index=index,
                    embeddings=reduce_embeddings(pooled, settings.average_clips) if pooled is not None else None,
                    view_scores=per_view if keep_views else None, plan=item.plan if keep_views else None,
                )
