"""Start-up benchmark: ``lfbtool --help`` wall time, and the peak RSS of a whole ``lfbtool merge`` process.

Both are measured as the user meets them, whole processes of the console script (``.venv/bin/lfbtool``),
each its own child whose wall time and ``ru_maxrss`` come from ``os.wait4`` (its own, not the other
children's). ``--help`` is the median of ``--runs`` runs; ``python -c "import torch"`` once beside it
shows what every command paid when the CLI imported torch at start. The merge joins two banks of
``--size-gb`` GB of fp16 features each (written in a child by bench_merge's writer, so that this
script stays small: a child's ``ru_maxrss`` starts from its parent's at exec). Targets: ``--help``
under 0.5 s; merge peak RSS under 300 MB.

    python benchmarks/bench_startup.py [--size-gb 0.7] [--runs 5] [--workdir bench-out/startup] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge import _plan, measure, write_inputs  # noqa: E402  (the benchmarks are scripts, not a package)

TARGET_HELP_S = 0.5
TARGET_MERGE_RSS_MB = 300.0


def lfbtool_command() -> list[str]:
    """The console script next to this interpreter (what a user runs), else ``python -m lfbtool``."""
    script = Path(sys.executable).parent / "lfbtool"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lfbtool"]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def generate(workdir: Path, size_gb: float, dim: int, seed: int) -> dict:
    """(Child) two banks of ``size_gb`` GB of features each, in contiguous runs of videos."""
    plan = _plan(2 * size_gb, dim, 2, "blocks", seed)
    t0 = time.perf_counter()
    banks, _ = write_inputs(workdir, plan, dim, seed, with_pickles=False)
    return {"banks": [str(p) for p in banks], "keys": sum(map(len, plan)),
            "rows": sum(n for part in plan for _, _, n in part), "made_s": time.perf_counter() - t0,
            "bank_gb": [p.stat().st_size / 1e9 for p in banks]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=0.05, help="GB (1e9 bytes) of fp16 features per bank")
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5, help="runs of --help (the median is reported)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the banks go (deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the banks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lfbtool-bench-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.child_generate:
        print(json.dumps(generate(workdir, args.size_gb, args.feature_dim, args.seed)))
        return 0
    try:
        return _bench(args, workdir)
    finally:
        if not args.keep:
            for path in [*workdir.glob("bank_*.h5"), *workdir.glob("merged.h5*")]:
                path.unlink(missing_ok=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)


def _bench(args: argparse.Namespace, workdir: Path) -> int:
    lfbtool = lfbtool_command()
    helps = [measure([*lfbtool, "--help"]) for _ in range(args.runs)]
    help_s = statistics.median(h["wall_s"] for h in helps)
    help_rss = max(h["peak_rss_mb"] for h in helps)
    torch_import = measure([sys.executable, "-c", "import torch"])

    command = [sys.executable, __file__, "--child-generate", "--workdir", str(workdir), "--size-gb",
               str(args.size_gb), "--feature-dim", str(args.feature_dim), "--seed", str(args.seed)]
    made = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    merged = workdir / "merged.h5"
    merge = measure([*lfbtool, "merge", *made["banks"], "-o", str(merged)])
    verified = subprocess.run([*lfbtool, "verify", str(merged)], capture_output=True, text=True)
    if verified.returncode != 0 or f" {made['keys']} keyframes, {made['rows']} rows" not in verified.stdout:
        raise SystemExit(f"{merged}: merged bank is not what was written: {verified.stdout}{verified.stderr}")

    banks = " + ".join(f"{gb:.2f}" for gb in made["bank_gb"])
    print(f"inputs: 2 banks of {banks} GB ({made['keys']} keyframes, {made['rows']} rows x {args.feature_dim} fp16), "
          f"written in {made['made_s']:.0f} s; {' '.join(lfbtool)}", flush=True)
    print(f"{'metric':44s} {'value':>10s} {'target':>8s}  verdict")
    rows = [
        (f"lfbtool --help wall time, median of {args.runs} (s)", help_s, f"< {TARGET_HELP_S:g}",
         _verdict(help_s < TARGET_HELP_S)),
        ("lfbtool --help peak RSS (MB)", help_rss, "", ""),
        ("python -c 'import torch' wall time (s)", torch_import["wall_s"], "", ""),
        ("python -c 'import torch' peak RSS (MB)", torch_import["peak_rss_mb"], "", ""),
        ("lfbtool merge, 2 banks: peak RSS (MB)", merge["peak_rss_mb"], f"< {TARGET_MERGE_RSS_MB:g}",
         _verdict(merge["peak_rss_mb"] < TARGET_MERGE_RSS_MB)),
        ("lfbtool merge, 2 banks: wall time (s)", merge["wall_s"], "", ""),
    ]
    for label, value, target, verdict in rows:
        print(f"{label:44s} {value:10.2f} {target:>8s}  {verdict}")
    print(f"--help / import torch alone: {help_s / torch_import['wall_s']:.2f}x the time, "
          f"{help_rss / torch_import['peak_rss_mb']:.2f}x the memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
