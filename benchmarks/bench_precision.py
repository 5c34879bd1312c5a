"""Compute precision: keyframes/s of the SlowOnly-R50 feature forward in fp32 and bf16 (or fp16),
each beside that precision's bare backbone forward, and how far reduced-precision features move.

The forward is LFBFeatureModel's, composed from its parts with the precision helpers (normalize ->
``run_backbone`` -> RoIAlign -> head, fp32 maps into RoIAlign), because ``lfbtool extract`` takes no
precision option until the lead wires ``lfbtool.runtime.precision`` into the model. Weights are random with
calibrated BatchNorm. Feature agreement is reported twice: as is (random ResNets are chaotic: even
rounding only the input moves features far, so this is a pessimistic bound) and with the residual
branches damped (``damp_residual_branches``), closer to what trained weights show.

    python benchmarks/bench_precision.py [--device cuda] [--batch 1] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F


def _timed(fn, repeat: int, device: torch.device) -> float:
    """Best seconds of ``repeat`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def _model(damped: bool, device: torch.device):
    from lfbtool.models import LFBFeatureModel, create_backbone
    from lfbtool.testing.checkpoints import damp_residual_branches, random_backbone_state

    backbone = create_backbone("slowonly_r50")
    backbone.load_state_dict(random_backbone_state("slowonly_r50", seed=0))
    if damped:
        damp_residual_branches(backbone)
    return LFBFeatureModel(backbone, half=False).eval().to(device)


def _features(model, clips: torch.Tensor, rois: torch.Tensor, precision: str) -> torch.Tensor:
    from lfbtool.runtime.precision import run_backbone

    return model.head(model.roi(run_backbone(model.backbone, model.normalize(clips), precision), rois))


def _agreement(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """Min cosine and max relative L2 difference over boxes."""
    cosine = F.cosine_similarity(reference.float(), other.float(), dim=1).min().item()
    relative = ((other.float() - reference.float()).norm(dim=1) / reference.float().norm(dim=1)).max().item()
    return cosine, relative


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"], help="compared with fp32")
    parser.add_argument("--batch", type=int, default=1, help="clips per forward")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=340)
    parser.add_argument("--boxes", type=int, default=4, help="boxes per clip")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a quick proof run: 4x64x64 clips, 1 repeat")
    args = parser.parse_args(argv)
    if args.small:
        args.height, args.width, args.repeat = 64, 64, 1

    from lfbtool.runtime import resolve_device
    from lfbtool.runtime.precision import check_precision, prepare_model, run_backbone

    device = resolve_device(args.device)
    reduced = str(check_precision(args.precision, device))
    generator = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (args.batch, 3, args.frames, args.height, args.width), generator=generator,
                          dtype=torch.uint8).to(device)
    corners = torch.rand(args.batch * args.boxes, 2, 2, generator=generator).sort(dim=1).values
    boxes = torch.cat([corners[:, 0], corners[:, 1]], dim=1) * torch.tensor([args.width, args.height] * 2)
    rois = torch.cat([torch.arange(args.batch).repeat_interleave(args.boxes)[:, None].float(), boxes], 1).to(device)

    print(f"precision: slowonly_r50 LFB features, {args.batch} x 3x{args.frames}x{args.height}x{args.width} "
          f"per forward, {args.boxes} boxes each, device {device}, best of {args.repeat}")
    results: dict[str, float] = {}
    features: dict[tuple[bool, str], torch.Tensor] = {}
    for damped in (False, True):
        for precision in ("fp32", reduced):
            model = prepare_model(_model(damped, device), precision)
            with torch.inference_mode():
                features[damped, precision] = _features(model, clips, rois, precision).cpu()
                if damped:
                    continue  # timing once is enough: damping changes values, not work
                x = model.normalize(clips)
                bare = _timed(lambda m=model, x=x, p=precision: run_backbone(m.backbone, x, p), args.repeat, device)
                full = _timed(lambda m=model, p=precision: _features(m, clips, rois, p), args.repeat, device)
            results[f"{precision} keyframes/s"] = args.batch / full
            print(f"  {precision:5s} feature forward {args.batch / full:8.2f} keyframes/s ({full * 1000:7.1f} ms)   "
                  f"bare backbone {args.batch / bare:8.2f} keyframes/s ({bare * 1000:7.1f} ms)")
    speedup = results[f"{reduced} keyframes/s"] / results["fp32 keyframes/s"]
    print(f"  {reduced} over fp32: {speedup:.2f}x keyframes/s")
    for damped, label in ((False, "random weights (chaotic)"), (True, "residual branches damped")):
        cosine, relative = _agreement(features[damped, "fp32"], features[damped, reduced])
        results[f"{label} min cosine"] = cosine
        print(f"  {reduced} vs fp32 features, {label:25s}: min cosine {cosine:.5f}, "
              f"max relative difference {relative:.4f}")
    results["speedup"] = speedup
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
