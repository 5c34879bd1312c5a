"""Recognize benchmark: views/s of the full ``recognize`` path against the bare model forward.

Writes ``--videos`` synthetic mp4 files, then measures on the same views:

* full: ``lfbtool.recognize.scoring.recognize`` (decode, resize, crop, transfer, forward in chunks of
  ``--max-testing-views``, clip averaging), wall time over all videos;
* bare: the recognizer's forward (normalization + network) on the already prepared uint8 views,
  already on the device, in the same chunks;
* features: the full path also returning clip embeddings (``recognize --features``);
* Grad-CAM: one forward + backward per input on its first view (``recognize --gradcam``, files not
  counted), reported as seconds per input;

and prints the rates, full/bare (1.0 means preparing views costs nothing on top of the model),
features/full, and Grad-CAM's cost per input.
Run: ``python benchmarks/bench_recognize.py [--device cuda] [--backbone slowonly_r50]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _sync(device) -> None:  # noqa: ANN001 - torch is imported late
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="slowonly_r50")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--num-clips", type=int, default=3)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--frame-interval", type=int, default=4)
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--crop-size", type=int, default=112)
    parser.add_argument("--crops", default="center")
    parser.add_argument("--max-testing-views", type=int, default=None)
    parser.add_argument("--batch-videos", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the best is reported")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from lfbtool.models.recognizer_factory import build_recognizer
    from lfbtool.recognize.gradcam import compute_gradcam
    from lfbtool.recognize.scoring import (
        RecognizeOptions,
        open_input,
        recognize,
        resolve_settings,
        video_views,
    )
    from lfbtool.testing.synthetic import synthetic_frames, write_video

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-recognize-"))
    paths = []
    for i in range(args.videos):
        frames = synthetic_frames(args.frames, args.height, args.width, seed=i)
        paths.append(write_video(workdir / f"v{i}.mp4", frames, fps=30, lossless=False))

    torch.manual_seed(0)
    recognizer = build_recognizer(args.backbone, num_classes=400).recognizer.eval().to(device)
    settings = resolve_settings(
        recognizer,
        RecognizeOptions(
            num_clips=args.num_clips,
            clip_len=args.clip_len,
            frame_interval=args.frame_interval,
            short_side=args.short_side,
            crop_size=args.crop_size,
            crops=args.crops,
            max_testing_views=args.max_testing_views,
            batch_videos=args.batch_videos,
        ),
    )
    views = torch.cat([video_views(open_input(path, settings), settings)[0] for path in paths])
    total_views = int(views.shape[0])
    chunk = settings.max_testing_views or settings.views_per_video * settings.batch_videos
    on_device = views.to(device)

    def bare() -> None:
        with torch.no_grad():
            for part in on_device.split(chunk):
                recognizer(part)

    def full() -> None:
        for _ in recognize(paths, recognizer, settings, device=device):
            pass

    def features() -> None:
        for _ in recognize(paths, recognizer, settings, device=device, embeddings=True):
            pass

    first = views.view(len(paths), -1, *views.shape[1:])[:, 0]  # each input's first view

    def gradcam() -> None:
        for clip in first:
            if recognizer.is_2d:
                raise SystemExit("the Grad-CAM timing reads 3D clips; use a 3D --backbone")
            compute_gradcam(recognizer, clip)

    runs = {"bare": bare, "full": full, "features": features, "gradcam": gradcam}
    for run in runs.values():
        run()  # warm-up: kernels, allocator, file cache
    timings = {name: float("inf") for name in runs}
    for _ in range(args.repeat):  # alternate, so load from other processes hits both alike
        for name, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            timings[name] = min(timings[name], time.perf_counter() - start)
    result = {
        "backbone": args.backbone,
        "device": str(device),
        "views": total_views,
        "view_shape": list(views.shape[1:]),
        "bare_views_per_s": total_views / timings["bare"],
        "full_views_per_s": total_views / timings["full"],
        "full_over_bare": timings["bare"] / timings["full"],
        "features_views_per_s": total_views / timings["features"],
        "features_over_full": timings["full"] / timings["features"],
        "gradcam_s_per_input": timings["gradcam"] / len(paths),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"recognize {args.backbone} on {device}: {total_views} views of {tuple(views.shape[1:])}")
        print(f"  bare model forward  {result['bare_views_per_s']:8.2f} views/s")
        print(f"  full recognize path {result['full_views_per_s']:8.2f} views/s")
        print(f"  full / bare         {result['full_over_bare']:8.3f}")
        print(f"  with --features     {result['features_views_per_s']:8.2f} views/s "
              f"({result['features_over_full']:.3f} of the full path's rate)")
        print(f"  Grad-CAM            {result['gradcam_s_per_input']:8.4f} s per input (first view, forward + backward)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
