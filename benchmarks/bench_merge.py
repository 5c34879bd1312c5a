"""Merge benchmark: `lfbtool merge` (streaming) against the MMAction2 way (load every shard pickle, save one).

Writes ``--inputs`` synthetic AVA-like fp16 banks totalling ``--size-gb`` GB of features with BankWriter
(streaming), and the same rows as MMAction2 shard pickles ``_lfb_train_{rank}.pkl`` made with
``torch.save`` of ``{video: {timestamp: [tensor[C], ...]}}`` (what ``LFBInferHead`` writes per rank).
Then, each in a fresh process whose peak RSS is its own ``ru_maxrss`` (``os.wait4``):

* ``lfbtool merge bank0.h5 ... -o merged.h5``;
* the MMAction2 way: ``torch.load`` every shard pickle into one dict (``lfb[video].update(...)``, as
  ``LFBInferHead`` does on rank 0) and ``torch.save`` the result.

MB/s is feature megabytes (1e6) over the process's wall time (start-up included). A child's
``ru_maxrss`` starts from its parent's at exec, so this script keeps itself small (stdlib only) and
makes the inputs in a child too. Targets: peak RSS
of ``lfbtool merge`` under 300 MB whatever the bank size, and at least 5x less than the MMAction2 way.
``--layout blocks`` (default) gives each input a contiguous run of videos, as extract's ranks do;
``--layout interleaved`` deals videos round-robin, so every input spans the whole key range and the
merge is one k-way merge over all inputs (the train + val case).

    python benchmarks/bench_merge.py --size-gb 1.0 --workdir bench-out/merge [--inputs 8] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RSS_MB = 300.0
TARGET_RATIO = 5.0
FIRST_TS, LAST_TS = 902, 1798


def _plan(size_gb: float, dim: int, inputs: int, layout: str, seed: int) -> list[list[tuple[str, int, int]]]:
    """Per input, its (video, timestamp, boxes) in key order; 1-6 boxes per keyframe, AVA's 15 minutes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows_wanted = int(np.ceil(size_gb * 1e9 / (dim * 2)))
    videos: list[list[tuple[str, int, int]]] = []
    rows = 0
    while rows < rows_wanted:
        keys = []
        for ts in range(FIRST_TS, LAST_TS + 1):
            n = min(int(rng.integers(1, 7)), rows_wanted - rows)
            keys.append((f"v{len(videos):05d}", ts, n))
            rows += n
            if rows >= rows_wanted:
                break
        videos.append(keys)
    if layout == "interleaved":
        return [[k for v in videos[i::inputs] for k in v] for i in range(inputs)]
    bounds = np.linspace(0, len(videos), inputs + 1).round().astype(int)
    return [[k for v in videos[bounds[i] : bounds[i + 1]] for k in v] for i in range(inputs)]


def write_inputs(workdir: Path, plan: list[list[tuple[str, int, int]]], dim: int, seed: int,
                 *, with_pickles: bool = True) -> tuple[list[Path], list[Path]]:
    """One bank (BankWriter, streamed) and, ``with_pickles``, one MMAction2 shard pickle per input,
    holding the same rows (only the pickles need torch)."""
    import numpy as np

    from lfbtool.bank.writer import BankWriter

    rng = np.random.default_rng(seed + 1)
    pool = rng.standard_normal((8192, dim), dtype=np.float32).astype(np.float16)
    boxes = np.tile(np.array([0.1, 0.1, 0.5, 0.9], np.float32), (6, 1))
    if with_pickles:
        import torch
    banks, pickles = [], []
    for i, keys in enumerate(plan):
        bank, pickle = workdir / f"bank_{i:02d}.h5", workdir / f"_lfb_train_{i}.pkl"
        shard: dict[str, dict[int, list]] = {}
        with BankWriter(bank, feature_dim=dim, dtype="float16", mode="train", block_rows=8192,
                        config_fingerprint="bench") as writer:
            for video, ts, n in keys:
                start = int(rng.integers(0, len(pool) - n))
                rows = pool[start : start + n]
                writer.append(video, ts, rows, boxes[:n], np.full(n, 0.95, np.float32))
                if with_pickles:
                    shard.setdefault(video, {})[ts] = list(torch.from_numpy(rows.copy()))  # views of one storage
        banks.append(bank)
        if with_pickles:
            torch.save(shard, pickle)
            pickles.append(pickle)
        del shard
    return banks, pickles


def mmaction_merge(pickles: list[str], out: str) -> None:
    """MMAction2 ``LFBInferHead`` on rank 0: load every rank's pickle into one dict, save it."""
    import torch

    lfb: dict = {}
    for path in pickles:
        part = torch.load(path, map_location="cpu", weights_only=True)
        for video in part:
            if video not in lfb:
                lfb[video] = part[video]
            else:
                lfb[video].update(part[video])
    torch.save(lfb, out)


def measure(command: list[str]) -> dict[str, float]:
    """Run ``command``; its wall time and peak RSS (its own ru_maxrss, not the other children's)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({proc.returncode}):\n{output.decode(errors='replace')}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="GB (1e9 bytes) of fp16 features in all")
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--inputs", type=int, default=8, help="banks / shard pickles to merge")
    parser.add_argument("--layout", choices=("blocks", "interleaved"), default="blocks")
    parser.add_argument("--workdir", type=Path, default=None, help="where inputs and outputs go (deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child-mmaction", nargs="+", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_mmaction:
        mmaction_merge(args.child_mmaction[:-1], args.child_mmaction[-1])
        return 0
    if args.child_generate:
        print(json.dumps(generate(args)))
        return 0

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lfbtool-bench-merge-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, workdir)
    finally:
        if not args.keep:
            for pattern in ("bank_*.h5", "_lfb_train_*.pkl", "merged.h5*", "lfb_train.pkl*"):
                for path in workdir.glob(pattern):
                    path.unlink(missing_ok=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)


def generate(args: argparse.Namespace) -> dict[str, float]:
    """(Child) write the inputs; describe them."""
    plan = _plan(args.size_gb, args.feature_dim, args.inputs, args.layout, args.seed)
    t0 = time.perf_counter()
    banks, pickles = write_inputs(args.workdir, plan, args.feature_dim, args.seed)
    return {
        "keys": sum(map(len, plan)), "rows": sum(n for part in plan for _, _, n in part),
        "made_s": time.perf_counter() - t0, "banks": [str(p) for p in banks], "pickles": [str(p) for p in pickles],
        "bank_gb": sum(p.stat().st_size for p in banks) / 1e9, "pkl_gb": sum(p.stat().st_size for p in pickles) / 1e9,
    }


def _bench(args: argparse.Namespace, workdir: Path) -> int:
    command = [sys.executable, __file__, "--child-generate", "--workdir", str(workdir), "--size-gb", str(args.size_gb),
               "--feature-dim", str(args.feature_dim), "--inputs", str(args.inputs), "--layout", args.layout,
               "--seed", str(args.seed)]
    made = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    keys, rows = made["keys"], made["rows"]
    feature_mb = rows * args.feature_dim * 2 / 1e6
    print(f"inputs: {args.inputs} banks ({args.layout}), {keys} keyframes, {rows} rows x {args.feature_dim} fp16 = "
          f"{feature_mb / 1e3:.2f} GB of features; {made['bank_gb']:.2f} GB h5 + {made['pkl_gb']:.2f} GB shard "
          f"pickles written in {made['made_s']:.0f} s", flush=True)

    merged, pkl_out = workdir / "merged.h5", workdir / "lfb_train.pkl"
    ours = measure([sys.executable, "-m", "lfbtool", "merge", *made["banks"], "-o", str(merged)])
    verified = subprocess.run([sys.executable, "-m", "lfbtool", "verify", str(merged)], capture_output=True, text=True)
    if verified.returncode != 0 or f" {keys} keyframes, {rows} rows" not in verified.stdout:
        raise SystemExit(f"{merged}: merged bank is not what was written: {verified.stdout}{verified.stderr}")
    theirs = measure([sys.executable, __file__, "--child-mmaction", *made["pickles"], str(pkl_out)])
    baseline = measure([sys.executable, "-c", "import lfbtool.cli, lfbtool.bank.merge"])
    torch_baseline = measure([sys.executable, "-c", "import torch"])

    ratio = theirs["peak_rss_mb"] / ours["peak_rss_mb"]
    table = [
        ("peak RSS (MB)", ours["peak_rss_mb"], theirs["peak_rss_mb"], f"< {TARGET_RSS_MB:g}",
         _verdict(ours["peak_rss_mb"] < TARGET_RSS_MB)),
        ("RSS of the imports alone (MB)", baseline["peak_rss_mb"], torch_baseline["peak_rss_mb"], "", ""),
        ("peak RSS above the imports (MB)", ours["peak_rss_mb"] - baseline["peak_rss_mb"],
         theirs["peak_rss_mb"] - torch_baseline["peak_rss_mb"], "", ""),
        ("wall time, start-up included (s)", ours["wall_s"], theirs["wall_s"], "", ""),
        ("throughput (MB/s of features)", feature_mb / ours["wall_s"], feature_mb / theirs["wall_s"], "", ""),
    ]
    print(f"{'metric':36s} {'lfbtool merge':>14s} {'MMAction2 way':>14s} {'target':>8s}  verdict")
    for label, a, b, target, verdict in table:
        print(f"{label:36s} {a:14.1f} {b:14.1f} {target:>8s}  {verdict}")
    print(f"peak memory, MMAction2 way / lfbtool merge: {ratio:.1f}x (target >= {TARGET_RATIO:g}x)  "
          f"{_verdict(ratio >= TARGET_RATIO)}")
    print(f"(this script's own peak RSS, the floor of every child's: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    if args.json:
        args.json.write_text(json.dumps({
            "size_gb": feature_mb / 1e3, "inputs": args.inputs, "layout": args.layout, "keys": keys, "rows": rows,
            "lfbtool": ours, "mmaction": theirs, "rss_ratio": ratio,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
