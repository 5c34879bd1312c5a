"""`lfbtool merge`: banks (train + val, interleaved keys) and shards; duplicates; every refusal.

Banks and shard segments are written here with BankWriter / the run scaffold's PartWriter (no model); expected results
are computed from the rows the test wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfbtool.bank import merge as merge_mod
from lfbtool.bank.merge import merge_banks
from lfbtool.bank.verify import check_bank
from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError
from lfbtool.extract import _segments as shards
from lfbtool.extract._segments import merge_shards
from lfbtool.runs.parts import RunPlan
from lfbtool.runs.records import AttemptRecord
from tests.extract_runs import bank_keys, read_bank

C = 16
FP = "0123456789abcdef"
Rows = dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def rows_for(keys: list[tuple[str, int]], seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    out: Rows = {}
    for key in keys:
        n = int(rng.integers(1, 4))
        scores = rng.uniform(0.9, 1, n).astype(np.float32)
        scores[0] = np.nan if rng.uniform() < 0.3 else scores[0]
        out[key] = (rng.normal(size=(n, C)).astype(np.float16), rng.uniform(0, 1, (n, 4)).astype(np.float32), scores)
    return out


def write_bank(path: Path, rows: Rows, *, dim: int = C, dtype: str = "float16", fingerprint: str = FP,
               mode: str = "train") -> Path:
    with BankWriter(path, feature_dim=dim, dtype=dtype, mode=mode, config_fingerprint=fingerprint,
                    config_json=json.dumps({"mode": mode})) as writer:
        for key in sorted(rows):
            feats, boxes, scores = rows[key]
            writer.append(*key, np.resize(feats, (len(feats), dim)), boxes, scores)
    return path


def assert_bank_holds(path: Path, rows: Rows) -> None:
    """The bank holds exactly ``rows``, in (video, timestamp) order, row for row."""
    keys = sorted(rows)
    assert bank_keys(path) == keys
    bank = read_bank(path)
    assert bank["key_row_offsets"].tolist() == np.cumsum([0] + [len(rows[k][0]) for k in keys]).tolist()
    for i, name in enumerate(("features", "boxes", "scores")):
        expected = np.concatenate([rows[k][i] for k in keys])
        assert bank[name].dtype == expected.dtype
        assert np.array_equal(bank[name], expected, equal_nan=True), name
    check_bank(path)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lfbtool", "merge", *args], capture_output=True, text=True,
                          timeout=120)


def no_output_left(path: Path) -> bool:
    return not path.exists() and not list(path.parent.glob(f"{path.name}.tmp-*"))


@pytest.fixture
def train_val(tmp_path: Path) -> tuple[Path, Path, Rows]:
    """A train bank (videos a, c) and a val bank (b, and more seconds of a, interleaved with train's)."""
    train = rows_for([("a", 902), ("a", 904), ("c", 1000), ("c", 1001)], seed=1)
    val = rows_for([("a", 903), ("a", 905), ("b", 902)], seed=2)
    return (write_bank(tmp_path / "lfb_train.h5", train), write_bank(tmp_path / "lfb_val.h5", val, mode="val"),
            {**train, **val})


def test_cli_merges_train_and_val_in_key_order(train_val, tmp_path: Path) -> None:
    train, val, everything = train_val
    done = cli(str(train), str(val), "-o", str(tmp_path / "all.h5"))
    assert done.returncode == 0, done.stderr
    assert "7 keyframes" in done.stdout
    assert_bank_holds(tmp_path / "all.h5", everything)
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("block_bytes", [1, C * 2 * 3])
def test_merge_across_read_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int) -> None:
    """Rows are read in blocks (at least FEATURE_CHUNK_ROWS rows); tiny blocks give the same bank."""
    monkeypatch.setattr(merge_mod, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(merge_mod.fmt, "FEATURE_CHUNK_ROWS", 2)
    first = rows_for([(v, t) for v in "ace" for t in range(900, 920, 2)], seed=3)
    second = rows_for([(v, t) for v in "abe" for t in range(901, 921, 2)], seed=4)
    third = rows_for([("z", t) for t in range(5)], seed=5)
    inputs = [write_bank(tmp_path / f"{i}.h5", r) for i, r in enumerate((first, second, third))]
    report = merge_banks(inputs, tmp_path / "out.h5")
    assert (report.keys, report.rows) == (len(first) + len(second) + len(third),
                                          sum(len(r[0]) for d in (first, second, third) for r in d.values()))
    assert_bank_holds(tmp_path / "out.h5", {**first, **second, **third})


def test_identical_duplicate_kept_once_and_reported(train_val, tmp_path: Path) -> None:
    train, _, _ = train_val
    rows = rows_for([("a", 902), ("b", 1)], seed=1)  # same seed, same first key: same rows as train's a,0902
    again = write_bank(tmp_path / "again.h5", {("a", 902): rows[("a", 902)]})
    done = cli(str(train), str(again), "-o", str(tmp_path / "out.h5"))
    assert done.returncode == 0, done.stderr
    assert "1 keys stored twice with identical rows, kept once: a,0902" in done.stdout
    assert_bank_holds(tmp_path / "out.h5", rows_for([("a", 902), ("a", 904), ("c", 1000), ("c", 1001)], seed=1))


def test_conflicting_duplicate_is_an_error_naming_the_key(train_val, tmp_path: Path) -> None:
    train, _, _ = train_val
    other_rows = rows_for([("a", 904)], seed=9)
    other = write_bank(tmp_path / "other.h5", other_rows)
    out = tmp_path / "out.h5"
    done = cli(str(train), str(other), "-o", str(out))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "key a,0904" in done.stderr and str(train) in done.stderr and str(other) in done.stderr
    assert "--on-conflict first" in done.stderr
    assert no_output_left(out)
    # --on-conflict first keeps the rows of the input given first, whichever it is
    for order, kept in (((train, other), rows_for([("a", 902), ("a", 904), ("c", 1000), ("c", 1001)], seed=1)),
                        ((other, train), None)):
        out.unlink(missing_ok=True)  # an existing -o is refused without --force
        done = cli(*map(str, order), "-o", str(out), "--on-conflict", "first")
        assert done.returncode == 0, done.stderr
        assert "1 conflicting keys, first kept: a,0904" in done.stdout
        if kept is None:
            kept = {**rows_for([("a", 902), ("a", 904), ("c", 1000), ("c", 1001)], seed=1), **other_rows}
        assert_bank_holds(out, kept)


@pytest.mark.parametrize(("change", "message"), [
    ({"dim": C + 1}, f"feature_dim {C + 1} differs from {C}"),
    ({"dtype": "float32"}, "dtype 'float32' differs from 'float16'"),
    ({"fingerprint": "ffffffffffffffff"}, "config_fingerprint 'ffffffffffffffff' differs from '0123456789abcdef'"),
])
def test_incompatible_banks_are_refused(train_val, tmp_path: Path, change: dict, message: str) -> None:
    train, _, _ = train_val
    rows = rows_for([("q", 1)], seed=7)
    if change.get("dtype") == "float32":
        rows = {k: (f.astype(np.float32), b, s) for k, (f, b, s) in rows.items()}
    odd = write_bank(tmp_path / "odd.h5", rows, **change)
    out = tmp_path / "out.h5"
    done = cli(str(train), str(odd), "-o", str(out))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and str(odd) in done.stderr and str(train) in done.stderr
    assert no_output_left(out)


def test_missing_or_broken_input_bank(train_val, tmp_path: Path) -> None:
    train, _, _ = train_val
    with pytest.raises(LfbError, match="nope.h5: no such bank file"):
        merge_banks([train, tmp_path / "nope.h5"], tmp_path / "out.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(LfbError, match="junk.h5: not an lfbtool bank: not readable as HDF5"):
        merge_banks([train, tmp_path / "junk.h5"], tmp_path / "out.h5")
    assert no_output_left(tmp_path / "out.h5")
    done = cli(str(train), str(train))
    assert done.returncode == 2 and "needs --output" in done.stderr


def test_output_appears_only_by_rename(train_val, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lfbtool.bank import writer

    train, val, _ = train_val
    out = tmp_path / "out.h5"
    renames = []
    real_replace, real_link = writer.os.replace, writer.os.link

    def recording(real):
        def call(src, dst):
            renames.append((real.__name__, Path(src).name, Path(dst), Path(dst).exists()))
            return real(src, dst)
        return call

    monkeypatch.setattr(writer.os, "replace", recording(real_replace))
    monkeypatch.setattr(writer.os, "link", recording(real_link))
    merge_banks([train, val], out)  # without --force: linked (refuses an output made meanwhile), tmp unlinked
    assert renames == [("link", renames[0][1], out, False)] and renames[0][1].startswith("out.h5.tmp-")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out.h5")] == ["out.h5"]
    renames.clear()
    merge_banks([train, val], out, overwrite=True)
    assert renames == [("replace", renames[0][1], out, True)] and renames[0][1].startswith("out.h5.tmp-")


# --- shards --------------------------------------------------------------------------------------

SHARD_KEYS = [(v, t) for v in ("a", "b") for t in (902, 903, 904)] + [("c", 902)]


def write_shards(out: Path, *, world: int = 2, segment_size: int = 2) -> Rows:
    """What `lfbtool extract --no-merge` leaves: an attempt record, segments and a manifest per rank."""
    directory = shards.shards_dir(out)
    directory.mkdir(parents=True)
    rows = rows_for(SHARD_KEYS, seed=11)
    AttemptRecord(mode="train", attempt=1, world_size=world, total_keyframes=len(SHARD_KEYS),
                         config_fingerprint=FP).write(directory)
    kwargs = {"feature_dim": C, "dtype": "float16", "mode": "train", "config_json": "{}", "config_fingerprint": FP}
    size, extra = divmod(len(SHARD_KEYS), world)
    start = 0
    for rank in range(world):
        mine = SHARD_KEYS[start:start + size + (rank < extra)]
        start += len(mine)
        writer = shards.segment_parts(out, "train", kwargs).writer(RunPlan(False, 1), rank, segment_size)
        for key in mine:
            writer.append(key, rows[key])
        writer.close(len(mine))
    return rows


def test_cli_merges_shards_then_deletes_them(tmp_path: Path) -> None:
    rows = write_shards(tmp_path)
    done = cli(str(tmp_path), "--mode", "train")
    assert done.returncode == 0, done.stderr
    assert_bank_holds(tmp_path / "lfb_train.h5", rows)
    assert not (tmp_path / "shards").exists()


def test_keep_shards(tmp_path: Path) -> None:
    rows = write_shards(tmp_path)
    done = cli(str(tmp_path), "--mode", "train", "--keep-shards")
    assert done.returncode == 0, done.stderr
    assert_bank_holds(tmp_path / "lfb_train.h5", rows)
    assert len(shards.segment_parts(tmp_path, "train").parts()) == 4


def test_missing_segment_is_refused_naming_rank_and_segment(tmp_path: Path) -> None:
    write_shards(tmp_path)
    (tmp_path / "shards" / "train-a001-r00001-s000001.h5").unlink()
    done = cli(str(tmp_path), "--mode", "train")
    assert done.returncode == 2
    assert "rank 1 segment 1 of attempt 1" in done.stderr and "segment is missing" in done.stderr
    assert no_output_left(tmp_path / "lfb_train.h5")
    assert len(shards.segment_parts(tmp_path, "train").parts()) == 3  # shards kept after a failed merge


def test_truncated_segment_is_refused_naming_rank_and_segment(tmp_path: Path) -> None:
    write_shards(tmp_path)
    segment = tmp_path / "shards" / "train-a001-r00000-s000001.h5"
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) * 2 // 3])
    done = cli(str(tmp_path), "--mode", "train")
    assert done.returncode == 2
    assert "rank 0 segment 1 of attempt 1" in done.stderr and "truncated" in done.stderr
    assert no_output_left(tmp_path / "lfb_train.h5")
    assert len(shards.segment_parts(tmp_path, "train").parts()) == 4


def test_segment_shorter_than_its_record_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path)
    manifest = tmp_path / "shards" / "train-a001-r00000.json"
    record = json.loads(manifest.read_text())
    record["segments"][0]["keys"] = 3
    manifest.write_text(json.dumps(record))
    with pytest.raises(LfbError, match="rank 0 segment 0 of attempt 1 .*holds 2 keyframes, its record says 3"):
        merge_shards(tmp_path / "shards", tmp_path / "lfb_train.h5", mode="train")


def test_unfinished_rank_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path)
    (tmp_path / "shards" / "train-a001-r00001.json").unlink()
    with pytest.raises(LfbError, match="rank 1 did not finish attempt 1 .no train-a001-r00001.json.; rerun extract with --resume"):
        merge_shards(tmp_path / "shards", tmp_path / "lfb_train.h5", mode="train")


def test_segment_from_other_settings_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path)
    segment = tmp_path / "shards" / "train-a001-r00001-s000000.h5"
    keys = bank_keys(segment)
    segment.unlink()
    write_bank(segment, rows_for(keys, seed=11), fingerprint="feedfeedfeedfeed")
    done = cli(str(tmp_path), "--mode", "train")
    assert done.returncode == 2
    assert "rank 1 segment 0 of attempt 1" in done.stderr and "config_fingerprint 'feedfeedfeedfeed'" in done.stderr
    assert no_output_left(tmp_path / "lfb_train.h5")


def test_no_shards(tmp_path: Path) -> None:
    done = cli(str(tmp_path), "--mode", "train")
    assert done.returncode == 2 and "no shards to merge" in done.stderr
