"""Detection throughput: the whole `lfbtool detect` loop against the detector's bare forward.

Both run on the same keyframe images (every second of a few synthetic videos), the same device,
batch 1, in one process and one run; each is timed --repeat times, alternating, best kept. The
detect loop adds decoding the centre frame (seek + decode), the person filter and the crash-safe
part writes; start-up (listing videos, loading the detector) is printed as the end-to-end rate.
A random-weight fasterrcnn_mobilenet_v3_large_320_fpn at --min-size keeps it quick on a CPU.

    python benchmarks/bench_detect.py --workdir bench-out/detect [--seconds 20] [--min-size 320]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/detect"))
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20, help="seconds per synthetic video (8 fps)")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--detector", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    from lfbtool.detect.run import clip_settings, detect_config, keyframe_keys, resolve_defaults, run_detect
    from lfbtool.models.detector import build_detector, detect_persons
    from lfbtool.runtime import resolve_device
    from lfbtool.testing.synthetic import synthetic_frames, write_video

    shutil.rmtree(args.workdir, ignore_errors=True)
    videos = args.workdir / "videos"
    for i in range(args.videos):
        write_video(videos / f"v{i}.mp4", synthetic_frames(8 * args.seconds, args.height, args.width, seed=i), 8,
                    lossless=False)
    model = build_detector(args.detector, min_size=args.min_size, max_size=args.max_size)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += 6.0  # random boxes score as persons
    checkpoint = args.workdir / "detector.pth"
    torch.save(model.state_dict(), checkpoint)
    config = resolve_defaults(detect_config(
        out=args.workdir / "out0.pkl", videos_root=videos, detector=args.detector, detector_checkpoint=checkpoint,
        detector_min_size=args.min_size, detector_max_size=args.max_size, clip_len=4, frame_interval=2,
        device=args.device,
    ))

    # The bare forward's inputs: the same keyframe images, decoded beforehand.
    device = resolve_device(args.device)
    model = model.to(device).eval()
    keys, _ = keyframe_keys(config)
    settings = clip_settings(config)
    from lfbtool.data.sampling import keyframe_frame_number

    images = []
    for video_id, t in keys:
        source = settings.open(video_id)
        number = keyframe_frame_number(t, fps=settings.fps_of(source), timestamp_start=settings.timestamp_start,
                                       start_index=settings.start_index, total=source.count_frames())
        images.append(source.read([number])[0])
    detect_persons(model, images[:1], device, score_threshold=0.5, max_per_frame=100)  # prime kernels

    full_s = loop_s = bare_s = float("inf")
    for attempt in range(args.repeat):
        config = dataclasses.replace(config, out=args.workdir / f"out{attempt}.pkl")
        started = time.perf_counter()
        result = run_detect(config, show_progress=False)
        full_s = min(full_s, time.perf_counter() - started)
        loop_s = min(loop_s, result.loop_seconds)
        started = time.perf_counter()
        for image in images:
            detect_persons(model, [image], device, score_threshold=0.5, max_per_frame=100)
        if device.type == "cuda":
            torch.cuda.synchronize()
        bare_s = min(bare_s, time.perf_counter() - started)
    n = result.keyframes
    assert n == len(images), (n, len(images))
    print(f"detect: best of {args.repeat}, {n} keyframes of {args.height}x{args.width}, {args.detector} at "
          f"min_size {args.min_size}, device {device}, {torch.get_num_threads()} threads")
    print(f"  bare forward   {n / bare_s:8.2f} keyframes/s  ({bare_s:.2f} s)")
    print(f"  detect loop    {n / loop_s:8.2f} keyframes/s  ({loop_s:.2f} s)")
    print(f"  end to end     {n / full_s:8.2f} keyframes/s  ({full_s:.2f} s, with start-up)")
    print(f"  overhead over bare forward: {(loop_s / bare_s - 1) * 100:.1f} % loop, "
          f"{(full_s / bare_s - 1) * 100:.1f} % end to end")
    shutil.rmtree(args.workdir, ignore_errors=True)
    return {"bare_rate": n / bare_s, "loop_rate": n / loop_s, "full_rate": n / full_s}


if __name__ == "__main__":
    main(sys.argv[1:])
