"""Build the demo bank with two git revisions and compare the two files byte for byte.

Issue 17's acceptance ("a before/after run of the demo bank is byte-identical in every dataset
except attributes that name the version") as a script. Each side is a tree of its revision
(``git archive``; by default the after side is this checkout as it is) run with this Python and ``PYTHONPATH`` set to that tree,
one thread, no CUDA. Both sides extract from the same inputs (the bundled example made once by the
*before* revision's ``examples/make_example.py``; the script also says whether the after revision
makes the same input files) in the same working directory with the same relative paths, so the
stored ``config`` JSON can be compared too. Every dataset is compared by its bytes; every attribute
is compared except those that name a version (``created_by``, ``lfbtool_version`` keys inside the
config JSON).

    python benchmarks/compare_demo_bank.py 4f9dce8          # before the runs/ restructure
    python benchmarks/compare_demo_bank.py 4f9dce8 --after HEAD --keep

Exit 0 when the banks match, 1 when they differ (the differences are listed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Attributes that name a version; everything else must be equal.
VERSION_ATTRS = {"created_by"}
VERSION_CONFIG_KEYS = {"lfbtool_version", "torch_version", "version"}


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")
    env.pop("LOCAL_RANK", None)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _run(args: list[str], *, tree: Path, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, env=_env(tree), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}) in {tree}: {' '.join(args)}\n{done.stdout}{done.stderr}")


def _check_imports_from(tree: Path, cwd: Path) -> None:
    """PYTHONPATH must win over the editable install, or both sides would run the same code."""
    done = subprocess.run([sys.executable, "-c", "import lfbtool; print(lfbtool.__file__)"], cwd=cwd,
                          env=_env(tree), capture_output=True, text=True, check=True)
    where = Path(done.stdout.strip()).resolve()
    if tree.resolve() not in where.parents:
        raise SystemExit(f"lfbtool imported from {where}, not from {tree}")


def _tree_of(revision: str, scratch: Path) -> Path:
    if revision == "HEAD-worktree":
        return REPO
    tree = scratch / f"tree-{revision.replace('/', '_')}"
    tree.mkdir()
    # `git archive`, not `git worktree add`: the same files, without touching the repository's worktree list.
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_bank(tree: Path, work: Path, result: Path) -> None:
    """``lfbtool extract --config examples/demo.toml`` of ``tree`` in ``work``; the bank -> ``result``."""
    _check_imports_from(tree, work)
    shutil.copy(tree / "examples" / "demo.toml", work / "examples" / "demo.toml")
    out = work / "examples" / "out"
    shutil.rmtree(out, ignore_errors=True)
    _run([sys.executable, "-m", "lfbtool", "extract", "--config", "examples/demo.toml", "--overwrite"],
         tree=tree, cwd=work)
    shutil.move(str(out / "lfb_train.h5"), result)
    shutil.rmtree(out)


def _config_without_versions(text: str) -> object:
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VERSION_CONFIG_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(text))


def _stored_bytes(dataset: object) -> bytes:
    """A dataset's values as bytes: the array's own for fixed-size types; for variable-length strings
    (an object array of pointers) each value's bytes with its length, so equal names compare equal."""
    import h5py
    import numpy as np

    assert isinstance(dataset, h5py.Dataset)
    values = np.asarray(dataset[()])
    if values.dtype.kind != "O":
        return values.tobytes()
    items = [v if isinstance(v, bytes) else str(v).encode() for v in values.ravel()]
    return b"".join(len(v).to_bytes(8, "little") + v for v in items)


def compare_banks(before: Path, after: Path) -> list[str]:
    """Every difference between two bank files, as lines; [] when they match."""
    import h5py
    import numpy as np

    differences: list[str] = []
    with h5py.File(before, "r") as a, h5py.File(after, "r") as b:
        for name in sorted(set(a.attrs) | set(b.attrs)):
            if name in VERSION_ATTRS:
                continue
            if name not in a.attrs or name not in b.attrs:
                differences.append(f"attribute {name}: only in {'after' if name in b.attrs else 'before'}")
                continue
            va, vb = a.attrs[name], b.attrs[name]
            if name == "config":
                va, vb = _config_without_versions(str(va)), _config_without_versions(str(vb))
                if va != vb:
                    keys = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
                    differences.append(f"attribute config differs in {keys}: "
                                       + ", ".join(f"{k}: {va.get(k)!r} -> {vb.get(k)!r}" for k in keys))
            elif not np.array_equal(np.asarray(va), np.asarray(vb)):
                differences.append(f"attribute {name}: {va!r} -> {vb!r}")
        names_a: list[str] = []
        names_b: list[str] = []
        a.visit(names_a.append)
        b.visit(names_b.append)
        for name in sorted(set(names_a) | set(names_b)):
            if name not in a or name not in b:
                differences.append(f"/{name}: only in {'after' if name in b else 'before'}")
                continue
            da, db = a[name], b[name]
            if not isinstance(da, h5py.Dataset):
                continue
            if da.dtype != db.dtype or da.shape != db.shape:
                differences.append(f"/{name}: {da.dtype}{da.shape} -> {db.dtype}{db.shape}")
                continue
            if _stored_bytes(da) != _stored_bytes(db):
                differences.append(f"/{name}: same shape and dtype, different bytes")
            for attr in sorted(set(da.attrs) | set(db.attrs)):
                if attr not in da.attrs or attr not in db.attrs or not np.array_equal(da.attrs[attr], db.attrs[attr]):
                    differences.append(f"/{name} attribute {attr} differs")
            if (da.compression, da.chunks, da.fletcher32) != (db.compression, db.chunks, db.fletcher32):
                differences.append(f"/{name}: storage {da.chunks, da.fletcher32} -> {db.chunks, db.fletcher32}")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="git revision built first (e.g. 4f9dce8, main before the restructure)")
    parser.add_argument("--after", default="HEAD-worktree",
                        help="git revision to compare with (default: this checkout as it is)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and say where")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="lfbtool-compare-"))
    try:
        before_tree = _tree_of(args.before, scratch)
        after_tree = _tree_of(args.after, scratch)
        work = scratch / "work"
        (work / "examples").mkdir(parents=True)
        _run([sys.executable, str(before_tree / "examples" / "make_example.py"), "examples/data"],
             tree=before_tree, cwd=work)
        _run([sys.executable, str(after_tree / "examples" / "make_example.py"), str(scratch / "data-after")],
             tree=after_tree, cwd=work)
        inputs_same = _file_digests(work / "examples" / "data") == _file_digests(scratch / "data-after")
        print(f"example inputs made by {args.before} and {args.after}: "
              f"{'identical' if inputs_same else 'DIFFERENT (both banks use the before inputs)'}")
        build_bank(before_tree, work, scratch / "before.h5")
        build_bank(after_tree, work, scratch / "after.h5")
        differences = compare_banks(scratch / "before.h5", scratch / "after.h5")
        for line in differences:
            print("differs:", line)
        print(f"demo bank {args.before} vs {args.after}: "
              f"{'byte-identical datasets and attributes (versions aside)' if not differences else f'{len(differences)} differences'}")
        return 1 if differences else 0
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
