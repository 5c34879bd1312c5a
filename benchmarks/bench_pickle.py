"""Proposals benchmark: lfbtool's safe loading of an AVA-train-sized proposals pkl against ``pickle.load``.

Writes MMAction2-style dense proposals, ``{"<video_id>,<0902..1798>": float32 [n, 5]}`` with 5-25 boxes
per keyframe and ``--videos`` 11-character video ids (235 x 897 = 210,795 keys, ~71 MB, as AVA train),
pickled at each ``--protocols`` (mmcv/mmengine's ``dump`` writes protocol 2; Python's default is 4;
lfbtool's synthetic data writes 5). Then, in this one process, ``--repeats`` rounds of, in turn:

* ``pickle.load`` of the file (no safety at all: the reference);
* ``lfbtool._io.safe_pickle.load_plain`` (the restricted, bounded loader);
* ``lfbtool.data.ava.read_proposals`` (load_plain plus the check of every key and box).

Medians of wall time are reported, with the ratios to ``pickle.load``; target: within 1.5x, for the
loader and for read_proposals (which also checks every key and box).
The first round also checks that load_plain gives what pickle.load gives (keys, values, dtypes).

    python benchmarks/bench_pickle.py --workdir bench-out/pickle [--protocols 4,2,5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 1.5
FIRST_TS, LAST_TS = 902, 1798
ID_CHARS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))


def make_proposals(videos: int, seed: int) -> dict[str, np.ndarray]:
    """Normalized x1 <= x2, y1 <= y2 boxes and a score, 5-25 per keyframe, float32 like MMAction2's files."""
    rng = np.random.default_rng(seed)
    ids = ["".join(rng.choice(ID_CHARS, 11)) for _ in range(videos)]
    keys = [f"{video},{ts:04d}" for video in ids for ts in range(FIRST_TS, LAST_TS + 1)]
    counts = rng.integers(5, 26, len(keys))
    corners = rng.random((int(counts.sum()), 2, 2), dtype=np.float32)
    corners.sort(axis=1)  # [:, 0] is the smaller corner
    boxes = np.concatenate([corners[:, 0], corners[:, 1], rng.random((len(corners), 1), dtype=np.float32)], axis=1)
    splits = np.split(boxes, np.cumsum(counts)[:-1])
    return {key: np.ascontiguousarray(part) for key, part in zip(keys, splits, strict=True)}


def _time(run) -> float:  # noqa: ANN001
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    del result
    gc.collect()
    return elapsed


def _pickle_load(path: Path):  # noqa: ANN202
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _same(reference: dict, loaded: dict) -> bool:
    if list(reference) != list(loaded):
        return False
    return all(
        type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip(reference.values(), loaded.values(), strict=True)
    )


def bench_file(path: Path, repeats: int) -> dict[str, float]:
    from lfbtool._io.safe_pickle import load_plain
    from lfbtool.data.ava import read_proposals

    if not _same(_pickle_load(path), load_plain(path)):
        raise SystemExit(f"{path}: load_plain differs from pickle.load")
    runs: dict[str, list[float]] = {"pickle.load": [], "load_plain": [], "read_proposals": []}
    for _ in range(repeats):
        runs["pickle.load"].append(_time(lambda: _pickle_load(path)))
        runs["load_plain"].append(_time(lambda: load_plain(path)))
        runs["read_proposals"].append(_time(lambda: read_proposals(path)))
    return {name: statistics.median(times) for name, times in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=235, help="x 897 keyframes each (AVA train: 235)")
    parser.add_argument("--protocols", default="4,2,5", help="pickle protocols to write, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where the pkls go (deleted after)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lfbtool-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    proposals = make_proposals(args.videos, args.seed)
    print(f"{len(proposals):,} keys, {sum(len(v) for v in proposals.values()):,} boxes; "
          f"median of {args.repeats} rounds, wall time")
    results, worst = {}, {"load_plain": 0.0, "read_proposals": 0.0}
    try:
        for protocol in (int(p) for p in args.protocols.split(",")):
            path = workdir / f"proposals_p{protocol}.pkl"
            with open(path, "wb") as handle:
                pickle.dump(proposals, handle, protocol=protocol)
            times = bench_file(path, args.repeats)
            base = times["pickle.load"]
            for name in worst:
                worst[name] = max(worst[name], times[name] / base)
            results[f"protocol_{protocol}"] = {"size_mb": path.stat().st_size / 1e6, **times}
            print(
                f"protocol {protocol} ({path.stat().st_size / 1e6:.0f} MB): pickle.load {base:.2f} s, "
                f"load_plain {times['load_plain']:.2f} s ({times['load_plain'] / base:.2f}x), "
                f"read_proposals {times['read_proposals']:.2f} s ({times['read_proposals'] / base:.2f}x)"
            )
            path.unlink()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for name, ratio in worst.items():
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        print(f"{name} / pickle.load, worst protocol: {ratio:.2f}x (target <= {TARGET_RATIO}) {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
