"""Per-backbone extraction throughput: `run_extract` keyframes/s next to the bare trunk forward.

For each backbone, one random MMAction2-layout checkpoint and the same synthetic dataset; the bare
forward runs the decoded clips of the same keyframes in the same batches on the same device, in the
same process and run. Reported: both rates and their ratio (extract loop + merge over bare forward,
best of --repeat alternating passes). The clip is each spec's AVA clip (``extract_clip``) unless
--clip-len / --frame-interval are given (SlowFast needs a multiple of its resample rate); a trunk with a
fixed clip length (VideoMAE: 16 frames) always takes that. ``all`` skips trunks that build no bank.

    python benchmarks/bench_backbones.py --workdir bench-out/backbones
    python benchmarks/bench_backbones.py --tiny   # 32 px, 8x1 clips: a quick check that it runs
    python benchmarks/bench_backbones.py --tiny --backbones vit_b_videomae,swin3d_t   # transformers
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from extract_timing import time_extract_and_bare

DEFAULT = ("slowonly_r50", "slowonly_r50_nl", "slowonly_r101", "slowfast_r50", "slowfast_r50_8x8")


def _batches(clips: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Consecutive clips stacked like the extract loop's batches (a shape change starts a new one)."""
    batches, pending = [], []
    for clip in clips:
        if pending and (len(pending) >= size or pending[0].shape != clip.shape):
            batches.append(torch.stack(pending))
            pending = []
        pending.append(clip)
    batches.append(torch.stack(pending))
    return batches


def bench_one(name: str, example, args: argparse.Namespace) -> dict[str, float]:
    from lfbtool.data.clips import KeyframeClips
    from lfbtool.extract.config import build_config, settings_of
    from lfbtool.extract.run import build_model, clip_settings, load_keyframes
    from lfbtool.models import backbone_spec
    from lfbtool.runtime import resolve_device
    from lfbtool.testing.checkpoints import make_random_detector_checkpoint

    spec = backbone_spec(name)
    work = args.workdir / name
    clip_len = spec.clip_frames or args.clip_len or spec.extract_clip.clip_len  # a fixed position table wins
    checkpoint = make_random_detector_checkpoint(work / "ckpt.pth", backbone=name)
    config = build_config(None, {
        "out": work / "out", "annotations": example.annotations_csv, "excluded": example.excluded_csv,
        "proposals": example.proposals_pkl, "frames_root": example.frames_root, "checkpoint": checkpoint,
        "backbone": name, "fps": example.fps, "timestamp_start": example.timestamp_start,
        "clip_len": clip_len,
        "frame_interval": args.frame_interval or spec.extract_clip.frame_interval,
        "short_side": args.short_side, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "device": args.device, "whole_frame_fallback": True,
    })
    device = resolve_device(args.device)
    settings = settings_of(config)
    model, _ = build_model(settings.model, device)
    keyframes, _ = load_keyframes(settings)
    dataset = KeyframeClips(keyframes, clip_settings(settings))
    batches = _batches([dataset.load(i)["clip"] for i in range(len(dataset))], args.batch_size)
    with torch.inference_mode():
        for shape in {batch.shape for batch in batches}:  # prime kernels for every batch shape
            model.backbone(model.normalize(torch.zeros(shape, dtype=torch.uint8, device=device)))

    timings = time_extract_and_bare(config, model, batches, device, args.repeat, work)
    steady_s, bare_s, result = timings.steady_s, timings.bare_s, timings.result
    count = result.keyframes
    assert count == len(dataset), (count, len(dataset))
    shutil.rmtree(work, ignore_errors=True)
    return {"keyframes": count, "clip": f"{config.clip_len}x{config.frame_interval}", "channels": spec.channels,
            "bare_rate": count / bare_s, "extract_rate": count / steady_s, "ratio": steady_s / bare_s}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/backbones"))
    parser.add_argument("--backbones", default=",".join(DEFAULT), help="comma-separated names, or 'all'")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of video per synthetic video")
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--clip-len", type=int, default=None, help="default: each spec's extract_clip")
    parser.add_argument("--frame-interval", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=None, help="default: lfbtool's auto choice")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="alternating timed passes of each; best kept")
    parser.add_argument("--tiny", action="store_true", help="7 s of 32 px video, 8x1 clips, one pass")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seconds, args.height, args.width, args.short_side = 7, 32, 43, 32
        args.clip_len, args.frame_interval, args.repeat = 8, 1, 1

    from lfbtool.models import list_backbones
    from lfbtool.testing.synthetic import make_ava_example

    names = ([s.name for s in list_backbones() if s.no_bank is None] if args.backbones == "all"
             else args.backbones.split(","))
    shutil.rmtree(args.workdir, ignore_errors=True)
    example = make_ava_example(args.workdir / "data", seconds=args.seconds, fps=8, height=args.height,
                               width=args.width, videos=False)
    print(f"backbones: {args.height}x{args.width} -> short side {args.short_side}, batch {args.batch_size}, "
          f"best of {args.repeat}, {torch.get_num_threads()} threads")
    print(f"  {'backbone':18} {'C':>5} {'clip':>6} {'bare kf/s':>10} {'extract kf/s':>13} {'extract/bare time':>18}")
    results = {}
    for name in names:
        r = bench_one(name, example, args)
        results[name] = r
        print(f"  {name:18} {r['channels']:5d} {r['clip']:>6} {r['bare_rate']:10.3f} {r['extract_rate']:13.3f} "
              f"{r['ratio']:17.2f}x", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
