"""Proposals benchmark: lfbtool's safe loading of an AVA-train-sized proposals pkl against ``pickle.load``.

Writes MMAction2-style dense proposals, ``{"<video_id>,<0902..1798>": float32 [n, 5]}`` with 5-25 boxes
per keyframe and ``--videos`` 11-character video ids (235 x 897 = 210,795 keys, ~71 MB, as AVA train),
pickled at each ``--protocols`` (mmcv/mmengine's ``dump`` writes protocol 2; Python's default is 4;
lfbtool's synthetic data writes 5). Then, in this one process, ``--repeats`` rounds of, in turn:

* ``pickle.load`` of the file (no safety at all: the reference; the collector on, as a user calls it);
* ``lfbtool._io.safe_pickle.load_plain`` (the restricted, bounded loader);
* ``lfbtool.data.ava.read_proposals`` (load_plain plus the check of every key and box).

Per protocol, the best (shortest) wall time of each is reported, with its ratio to ``pickle.load``'s
best and a verdict against the target, 1.5x (issue 16), for the loader and for read_proposals. The best
of interleaved rounds is the least disturbed by other work on the machine, for all three alike.
Before timing, load_plain and read_proposals are checked to give what pickle.load gives.

    python benchmarks/bench_pickle.py --workdir bench-out/pickle [--protocols 2,4,5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import shutil
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


def _time(run) -> tuple[float, float]:  # noqa: ANN001
    """Wall and CPU seconds of ``run()`` (the CPU time of this process: less moved by other work)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
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


def _checked(reference: dict, proposals: dict) -> bool:
    """read_proposals' result: ``(video_id, timestamp)`` keys in file order, the same float32 boxes."""
    expected = [(key.split(",")[0], int(key.split(",")[1])) for key in reference]
    return list(proposals) == expected and _same(dict(zip(expected, reference.values(), strict=True)), proposals)


LOADERS = ("pickle.load", "load_plain", "read_proposals")


def bench_file(path: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Best wall and best CPU time of each loader over ``repeats`` interleaved rounds."""
    from lfbtool._io.safe_pickle import load_plain
    from lfbtool.data.ava import read_proposals

    reference = _pickle_load(path)
    if not _same(reference, load_plain(path)):
        raise SystemExit(f"{path}: load_plain differs from pickle.load")
    if not _checked(reference, read_proposals(path)):
        raise SystemExit(f"{path}: read_proposals differs from pickle.load")
    del reference
    gc.collect()
    run = {"pickle.load": _pickle_load, "load_plain": load_plain, "read_proposals": read_proposals}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in LOADERS}
    for _ in range(repeats):
        for name in LOADERS:
            times[name].append(_time(lambda: run[name](path)))  # noqa: B023 - called at once
    return {name: (min(w for w, _ in values), min(c for _, c in values)) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=235, help="x 897 keyframes each (AVA train: 235)")
    parser.add_argument("--protocols", default="2,4,5", help="pickle protocols to write, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the best of them counts (>= 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the pkls go (deleted after)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats: at least 3")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lfbtool-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    proposals = make_proposals(args.videos, args.seed)
    print(f"{len(proposals):,} keys, {sum(len(v) for v in proposals.values()):,} boxes; best of "
          f"{args.repeats} interleaved rounds, wall time (CPU time); target <= {TARGET_RATIO}x pickle.load, wall")
    results, verdicts = {}, []
    try:
        for protocol in (int(p) for p in args.protocols.split(",")):
            path = workdir / f"proposals_p{protocol}.pkl"
            with open(path, "wb") as handle:
                pickle.dump(proposals, handle, protocol=protocol)
            size_mb = path.stat().st_size / 1e6
            times = bench_file(path, args.repeats)
            (base, base_cpu) = times["pickle.load"]
            ratios = {name: (times[name][0] / base, times[name][1] / base_cpu) for name in LOADERS[1:]}
            results[f"protocol_{protocol}"] = {
                "size_mb": size_mb,
                **{f"{name} wall_s": wall for name, (wall, _) in times.items()},
                **{f"{name} cpu_s": cpu for name, (_, cpu) in times.items()},
                **{f"{name} / pickle.load": wall for name, (wall, _) in ratios.items()},
                **{f"{name} / pickle.load cpu": cpu for name, (_, cpu) in ratios.items()},
            }
            print(f"protocol {protocol} ({size_mb:.0f} MB): pickle.load {base:.2f} s ({base_cpu:.2f} s)", flush=True)
            for name, (ratio, cpu_ratio) in ratios.items():
                verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
                verdicts.append(verdict)
                print(f"  {name:<15} {times[name][0]:.2f} s ({times[name][1]:.2f} s)  "
                      f"{name} / pickle.load {ratio:.2f}x ({cpu_ratio:.2f}x)  {verdict}", flush=True)
            path.unlink()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{verdicts.count('PASS')} of {len(verdicts)} within {TARGET_RATIO}x: "
          f"{'PASS' if 'MISS' not in verdicts else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
