"""Video decode: frames decoded per frame the keyframe clips span, before and after decode-once.

A long-GOP h264 video (default 1280x720, 30 fps, a key frame every 250 frames, 24 s, B-frames) is
generated once into --workdir and kept. Keyframe clips one second apart are read in keyframe order:

* before: the old reader, which had no window: every clip that overlaps the previous one seeks back
  to the key frame before it (emulated by dropping the reader's window and decode position);
* after: one ``VideoFile`` keeping the last clip's decoded frames and decoding on.

Then the same clips through a DataLoader with --workers workers: one keyframe per item, round robin
(before) against ``VideoChunkSampler`` lanes (after). Counts are exact (``frames_decoded``); the
rates are wall-clock of this run.

    python benchmarks/bench_decode.py --workdir bench-out/decode [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

CLIPS = ((4, 16), (32, 2))


def make_video(path: Path, *, seconds: int, fps: int, height: int, width: int, gop: int) -> Path:
    """A panning noise texture encoded frame by frame (the whole video never sits in memory)."""
    import av

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(height // 4 + 1, (width + 4 * seconds * fps) // 4 + 1, 3), dtype=np.uint8)
    texture = texture.repeat(4, axis=0).repeat(4, axis=1)  # 4x4 blocks: compressible, still moving
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast",
                          "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"}
        for t in range(seconds * fps):
            frame = np.ascontiguousarray(texture[:height, 4 * t:4 * t + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def clip_numbers(seconds: int, fps: int, clip_len: int, interval: int, total: int) -> list[list[int]]:
    from lfbtool.data.sampling import keyframe_clip_numbers

    return [keyframe_clip_numbers(t, fps=fps, timestamp_start=0, start_index=1, clip_len=clip_len,
                                  interval=interval, total=total).tolist() for t in range(1, seconds)]


def spanned(clips: list[list[int]]) -> int:
    return len({n for numbers in clips for n in range(min(numbers), max(numbers) + 1)})


def single_process(path: Path, clips: list[list[int]], *, old: bool) -> tuple[int, float]:
    from lfbtool.data.frames import VideoFile

    video = VideoFile(path)
    _ = video.count_frames()  # open outside the timing
    started = time.perf_counter()
    for numbers in clips:
        if old:  # no window and no live position: the overlapping clip seeks back to a key frame
            video.release_frames()
            video._frames = None
        video.read(numbers)
    return video.frames_decoded, time.perf_counter() - started


def with_workers(root: Path, seconds: int, fps: int, clip: tuple[int, int], workers: int, *, old: bool) -> tuple[int, float]:
    from torch.utils.data import DataLoader

    from lfbtool.data.ava import Keyframe
    from lfbtool.data.batching import KeyframeChunks, VideoChunkSampler
    from lfbtool.data.clips import ClipSettings, KeyframeClips

    class Counted(KeyframeChunks):
        def __getitem__(self, chunk):
            super().__getitem__(chunk)
            return {id(s): s.frames_decoded for s in self.dataset._sources.values()}

    settings = ClipSettings(frames_root=None, videos_root=root, frame_template="img_{:05d}.jpg", video_ext="mp4",
                            fps=fps, timestamp_start=0, start_index=1, clip_len=clip[0], frame_interval=clip[1],
                            short_side=256)
    box = np.array([[0.1, 0.1, 0.5, 0.9]], dtype=np.float32)
    keyframes = [Keyframe("video", t, box, np.ones(1, dtype=np.float32)) for t in range(1, seconds)]
    chunks = [(i,) for i in range(len(keyframes))] if old else VideoChunkSampler(
        ["video"] * len(keyframes), num_workers=workers, chunk_size=4)
    loader = DataLoader(Counted(KeyframeClips(keyframes, settings)), sampler=chunks, batch_size=None,
                        num_workers=workers, prefetch_factor=2 if workers else None)
    started = time.perf_counter()
    counts: dict[tuple[int, int], int] = {}
    for place, reported in enumerate(loader):
        for source, count in reported.items():
            key = (place % max(workers, 1), source)
            counts[key] = max(counts.get(key, 0), count)
    return sum(counts.values()), time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/decode"))
    parser.add_argument("--seconds", type=int, default=24)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, default=250)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for the second table (0: skip)")
    parser.add_argument("--small", action="store_true", help="a quick proof run: 6 s of 192x108, 2 workers")
    args = parser.parse_args(argv)
    if args.small:
        args.seconds, args.height, args.width, args.workers = 6, 108, 192, 2

    name = f"gop{args.gop}_{args.width}x{args.height}_{args.fps}fps_{args.seconds}s"
    video = make_video(args.workdir / name / "video.mp4", seconds=args.seconds, fps=args.fps,
                       height=args.height, width=args.width, gop=args.gop)
    total = args.seconds * args.fps
    print(f"decode: {video} ({args.width}x{args.height}, {args.fps} fps, key frame every {args.gop}, "
          f"{args.seconds} s), keyframe clips 1 s apart, in keyframe order")
    results: dict[str, float] = {}
    for clip_len, interval in CLIPS:
        clips = clip_numbers(args.seconds, args.fps, clip_len, interval, total)
        span = spanned(clips)
        rows = [("one process", *single_process(video, clips, old=old), old) for old in (True, False)]
        if args.workers:
            rows += [(f"{args.workers} workers", *with_workers(video.parent, args.seconds, args.fps,
                                                              (clip_len, interval), args.workers, old=old), old)
                     for old in (True, False)]
        print(f"  {clip_len}x{interval} clips: {len(clips)} clips spanning {span} frames")
        for where, decoded, seconds, old in rows:
            label = "before (seek per clip)" if old else "after (decode once)   "
            if where != "one process":
                label = "before (round robin)  " if old else "after (video lanes)   "  # rates include start-up
            print(f"    {where:12s} {label} decoded/spanned {decoded / span:5.2f}   {decoded / seconds:7.1f} "
                  f"decoded frames/s   {len(clips) / seconds:6.2f} clips/s")
            results[f"{clip_len}x{interval} {where} {'before' if old else 'after'} ratio"] = decoded / span
        before, after = rows[0][2], rows[1][2]
        print(f"    one process: {before / after:.2f}x faster reading the clips")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
