"""Tiny deterministic AVA-style datasets for the demo and the tests.

Frames are smooth moving gradients and blobs (codecs compress them well and keyframes are sparse,
so seeking is exercised). The mp4 of a video is encoded losslessly from the *decoded* JPEG pixels
of its frame directory, so both inputs give identical frames and the same features.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, encode_jpeg, encode_png


def synthetic_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 frames: a drifting colour gradient with two moving soft blobs."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64)[:, None, None]
    y = np.linspace(0.0, 1.0, height)[None, :, None]
    x = np.linspace(0.0, 1.0, width)[None, None, :]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    speed = rng.uniform(0.05, 0.15, size=3)
    channels = [
        100 + 60 * np.sin(2 * np.pi * (x * (1 + c) + y * (2 - c) * 0.5) + phase[c] + speed[c] * t)
        for c in range(3)
    ]
    image = np.stack(channels, axis=-1)
    for _ in range(2):
        colour = rng.uniform(-90, 90, size=3)
        cx0, cy0 = rng.uniform(0.2, 0.8, size=2)
        vx, vy = rng.uniform(-0.01, 0.01, size=2)
        radius = rng.uniform(0.12, 0.25)
        cx = (cx0 + vx * t) % 1.0
        cy = (cy0 + vy * t) % 1.0
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2)))
        image = image + blob[..., None] * colour
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_frame_dir(
    directory: str | Path, frames: np.ndarray, template: str = "img_{:05d}.jpg", start_index: int = 1
) -> list[Path]:
    """Write frames as ``template.format(start_index + i)``: JPEG quality 95, PNG if ``.png``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png = template.lower().endswith(".png")
    paths = []
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its image codecs; they still work
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, frame in enumerate(frames):
            chw = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).contiguous()
            data = encode_png(chw) if png else encode_jpeg(chw, quality=95)
            path = directory / template.format(start_index + i)
            path.write_bytes(data.numpy().tobytes())
            paths.append(path)
    return paths


def read_frame_dir(paths: list[Path]) -> np.ndarray:
    """Decode written frame files back to ``[N, H, W, 3]`` uint8 (what a reader will see)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = [
            decode_image(torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)
            for p in paths
        ]
    return torch.stack(decoded).permute(0, 2, 3, 1).contiguous().numpy()


def write_video(path: str | Path, frames: np.ndarray, fps: int, lossless: bool = True, gop: int = 12) -> Path:
    """Encode ``[N, H, W, 3]`` RGB frames to H.264 mp4 with a keyframe every ``gop`` frames.

    Lossless: libx264rgb, crf 0, rgb24, so decoding gives the input exactly. Lossy: libx264 with
    B-frames, yuv420p (yuv444p when a side is odd, which 4:2:0 cannot hold).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, height, width, _ = frames.shape
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    with av.open(str(path), "w") as container:
        if lossless:
            stream = container.add_stream("libx264rgb", rate=fps)
            stream.pix_fmt = "rgb24"
            stream.options = {"crf": "0", "preset": "medium", "x264-params": params}
        else:
            stream = container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
            stream.options = {"crf": "18", "preset": "medium", "x264-params": params + ":bframes=2"}
        stream.width, stream.height = width, height
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass
class AvaExample:
    """Paths and parameters of a synthetic AVA-style dataset (see docs/inputs.md)."""

    root: Path
    frames_root: Path
    videos_root: Path | None
    annotations_csv: Path
    excluded_csv: Path
    proposals_pkl: Path
    proposals_csv: Path
    video_ids: tuple[str, ...]
    sizes: dict[str, tuple[int, int]]
    num_frames: int
    seconds: int
    fps: int
    timestamp_start: int
    timestamps: tuple[int, ...]
    start_index: int = 1
    template: str = "img_{:05d}.jpg"
    seed: int = 0
    #: notable keys, as (video_id, timestamp)
    excluded_key: tuple[str, int] = ("", 0)
    no_proposals_key: tuple[str, int] = ("", 0)
    low_score_key: tuple[str, int] = ("", 0)
    proposals_only_key: tuple[str, int] = ("", 0)


def _random_box(rng: np.random.Generator) -> list[float]:
    w, h = rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.7)
    x1, y1 = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
    return [round(float(v), 3) for v in (x1, y1, x1 + w, y1 + h)]


def _jitter(box: list[float], rng: np.random.Generator) -> list[float]:
    moved = [min(max(v + rng.uniform(-0.02, 0.02), 0.0), 1.0) for v in box]
    x1, x2 = sorted(moved[0::2])
    y1, y2 = sorted(moved[1::2])
    return [round(v, 3) for v in (x1, y1, x2, y2)]


def make_ava_example(
    root: str | Path,
    *,
    video_ids: tuple[str, ...] = ("vid_a", "vid_b", "vid_c"),
    seconds: int = 8,
    fps: int = 8,
    height: int = 64,
    width: int = 85,
    timestamp_start: int = 900,
    seed: int = 0,
    videos: bool = True,
) -> AvaExample:
    """Write a tiny AVA-style dataset under ``root`` and return its paths and parameters.

    Every video has ``seconds * fps`` frames; the last video is portrait ``height x (3/4 height)``.
    Keyframes are ``timestamp_start + 2 .. timestamp_start + seconds - 3``. The first video's
    second keyframe has only proposals scored below 0.9 (threshold fallback); the second video's
    third keyframe is excluded; the last video's last keyframe has no proposals (whole-frame
    fallback); one key past the last annotated one has proposals only.
    """
    if seconds < 7 or len(video_ids) < 2:
        raise ValueError("need seconds >= 7 and at least two videos")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    num_frames = seconds * fps
    timestamps = tuple(range(timestamp_start + 2, timestamp_start + seconds - 2))
    sizes = {vid: (height, width) for vid in video_ids}
    sizes[video_ids[-1]] = (height, max(8, (height * 3) // 4))

    frames_root = root / "frames"
    videos_root = root / "videos" if videos else None
    for i, vid in enumerate(video_ids):
        h, w = sizes[vid]
        paths = write_frame_dir(frames_root / vid, synthetic_frames(num_frames, h, w, seed * 1000 + i))
        if videos_root is not None:
            write_video(videos_root / f"{vid}.mp4", read_frame_dir(paths), fps, lossless=True)

    excluded_key = (video_ids[1], timestamps[2])
    no_proposals_key = (video_ids[-1], timestamps[-1])
    low_score_key = (video_ids[0], timestamps[1])
    proposals_only_key = (video_ids[0], timestamps[-1] + 1)

    ann_rows: list[str] = []
    proposals: dict[str, np.ndarray] = {}
    for vid in video_ids:
        for ts in timestamps:
            boxes = [_random_box(rng) for _ in range(int(rng.integers(1, 4)))]
            for person, box in enumerate(boxes):
                for action in sorted(rng.choice(np.arange(1, 81), size=int(rng.integers(1, 3)), replace=False)):
                    ann_rows.append(f"{vid},{ts:04d},{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f},{action},{person}")
            if (vid, ts) == no_proposals_key:
                continue
            low = (vid, ts) == low_score_key
            rows = [_jitter(b, rng) + [round(float(rng.uniform(0.6, 0.89) if low else rng.uniform(0.9, 1.0)), 6)]
                    for b in boxes]
            rows.append(_random_box(rng) + [round(float(rng.uniform(0.05, 0.6)), 6)])
            proposals[f"{vid},{ts:04d}"] = np.array(rows, dtype=np.float64)
    vid, ts = proposals_only_key
    proposals[f"{vid},{ts:04d}"] = np.array([_random_box(rng) + [0.95]], dtype=np.float64)

    annotations_csv = root / "annotations.csv"
    excluded_csv = root / "excluded.csv"
    proposals_pkl = root / "proposals.pkl"
    proposals_csv = root / "proposals.csv"
    annotations_csv.write_text("\n".join(ann_rows) + "\n")
    excluded_csv.write_text(f"{excluded_key[0]},{excluded_key[1]:04d}\n")
    with open(proposals_pkl, "wb") as handle:
        pickle.dump(proposals, handle, protocol=pickle.HIGHEST_PROTOCOL)
    proposals_csv.write_text("".join(
        f"{key},{','.join(repr(float(v)) for v in row)}\n" for key, array in proposals.items() for row in array
    ))
    return AvaExample(
        root=root, frames_root=frames_root, videos_root=videos_root, annotations_csv=annotations_csv,
        excluded_csv=excluded_csv, proposals_pkl=proposals_pkl, proposals_csv=proposals_csv,
        video_ids=tuple(video_ids), sizes=sizes, num_frames=num_frames, seconds=seconds, fps=fps,
        timestamp_start=timestamp_start, timestamps=timestamps, seed=seed, excluded_key=excluded_key,
        no_proposals_key=no_proposals_key, low_score_key=low_score_key, proposals_only_key=proposals_only_key,
    )
