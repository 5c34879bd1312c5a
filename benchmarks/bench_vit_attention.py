"""VideoMAE ViT attention under reduced precision: the written-out attention (``q @ k^T``, softmax, ``@ v``,
what fp32 runs for exactness) against ``scaled_dot_product_attention`` (what bf16/fp16 autocast runs),
both under the same autocast, beside the fp32 forward; and how far each moves the features from fp32.

The ViT runs as ``lfbtool extract`` runs its backbone (``run_backbone``: channels-last weights and
input, autocast). Weights are random (``N(0, 0.02)`` linears, as MMAction2 initialises them).

    python benchmarks/bench_vit_attention.py [--backbone vit_b_videomae] [--device cuda] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from unittest import mock

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


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_b_videomae")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a quick proof run: 112x112 frames, 1 repeat")
    args = parser.parse_args(argv)
    if args.small:
        args.height, args.width, args.repeat = 112, 112, 1

    from lfbtool.models import create_backbone, vit_mae
    from lfbtool.runtime import resolve_device
    from lfbtool.runtime.precision import check_precision, prepare_model, run_backbone

    device = resolve_device(args.device)
    precision = check_precision(args.precision, device, warn=print)
    torch.manual_seed(0)
    model = create_backbone(args.backbone).to(device)
    frames = model.num_frames
    clip = torch.randn(args.batch, 3, frames, args.height, args.width, device=device)
    with torch.inference_mode():
        exact = run_backbone(model, clip, "fp32")
        fp32_s = _timed(lambda: run_backbone(model, clip, "fp32"), args.repeat, device)
        prepare_model(model, precision)
        fused = run_backbone(model, clip, precision)
        fused_s = _timed(lambda: run_backbone(model, clip, precision), args.repeat, device)
        with mock.patch.object(vit_mae, "fused_attention_wanted", lambda x: False):
            written = run_backbone(model, clip, precision)
            written_s = _timed(lambda: run_backbone(model, clip, precision), args.repeat, device)

    def cosine(other: torch.Tensor) -> float:
        return F.cosine_similarity(exact.flatten(1).double(), other.flatten(1).double(), dim=1).min().item()

    tokens = (frames // 2) * (args.height // 16) * (args.width // 16)
    print(f"{args.backbone} on {device}: {args.batch} x {frames}x{args.height}x{args.width} ({tokens} tokens), "
          f"best of {args.repeat}, {torch.get_num_threads()} threads")
    print(f"  fp32 (written-out attention)      {fp32_s * 1000:9.1f} ms")
    print(f"  {precision} written-out attention      {written_s * 1000:9.1f} ms  ({fp32_s / written_s:.2f}x fp32)  "
          f"cosine to fp32 {cosine(written):.5f}")
    print(f"  {precision} scaled_dot_product_attn    {fused_s * 1000:9.1f} ms  ({fp32_s / fused_s:.2f}x fp32)  "
          f"cosine to fp32 {cosine(fused):.5f}")
    print(f"  fused over written-out: {written_s / fused_s:.2f}x faster")
    return {"fp32_s": fp32_s, "written_s": written_s, "fused_s": fused_s}


if __name__ == "__main__":
    main(sys.argv[1:])
