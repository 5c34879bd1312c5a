"""The run scaffold on its own: naming, the mode rule, prepare/resume/refusals, finished parts, messages.

A tiny JSON part format stands in for the commands' own (bank segments, box pickles, records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfbtool._io.atomic import atomic_write
from lfbtool.errors import LfbError, SettingError
from lfbtool.runs.naming import PartName, check_mode, part_name
from lfbtool.runs.parts import Finished, RunParts
from lfbtool.runs.settings import describe_differences, differing_settings, fingerprint


class _JsonBuilder:
    def __init__(self, path: Path) -> None:
        self.path, self.items = path, {}

    def add(self, key, item) -> None:
        self.items[str(key)] = item

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def rows(self) -> int:
        return len(self.items)

    def finish(self) -> None:
        text = json.dumps(self.items)
        atomic_write(self.path, lambda handle: handle.write(text), binary=False)

    def abort(self) -> None:
        self.items = {}


class JsonParts:
    suffix = ".json"
    item = "items"

    def start(self, path: Path) -> _JsonBuilder:
        return _JsonBuilder(path)

    def keys(self, path: Path, label: str) -> list[int]:
        return [int(k) for k in json.loads(path.read_text())]


def _parts(tmp_path: Path, name: str = "train") -> RunParts:
    return RunParts(tmp_path / "parts", name, JsonParts(), command="test")


def _write(parts: RunParts, plan, rank: int, keys, size: int = 2) -> None:
    writer = parts.writer(plan, rank, size)
    for key in keys:
        writer.append(key, key * 10)
    writer.close(len(keys))


@pytest.mark.parametrize("bad", ["", "train-x", "../x", "a/b", "-a", ".hidden", "x" * 65, "é", "a b", 3, None])
def test_the_mode_rule_refuses_in_one_line(bad) -> None:
    with pytest.raises(SettingError, match="^mode must be a plain name") as caught:  # the CLI says --mode
        check_mode(bad)
    assert "\n" not in str(caught.value) and caught.value.setting == "mode"


@pytest.mark.parametrize("good", ["train", "val", "test_2", "v1.2", "a+b", "X" * 64])
def test_the_mode_rule_accepts_plain_names(good) -> None:
    assert check_mode(good) == good


def test_part_names_round_trip() -> None:
    name = part_name("val", 12, 3, 45, ".h5")
    assert name == "val-a012-r00003-s000045.h5"
    assert PartName.parse(name) == PartName("val", 12, 3, 45, ".h5")
    assert PartName.parse("val-a012-r00003.json") is None
    assert PartName.parse("val-a1000-r00003-s000045.h5").attempt == 1000


def test_fingerprint_is_canonical_and_differences_are_words() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    ours = {"clip_len": 4, "input_sha256": {"annotations": "aa", "proposals": "pp"}, "fps": 30}
    theirs = {"clip_len": 8, "input_sha256": {"annotations": "bb", "proposals": "pp"}, "fps": 30, "old": True}
    assert differing_settings(ours, theirs) == ["clip_len", "input_sha256.annotations", "old"]
    text = describe_differences(ours, theirs)
    assert text == ("clip_len 4 now, 8 in the earlier run; annotations: other file content now than in the earlier "
                    "run; old not set now, true in the earlier run")
    assert "aa" not in text and "bb" not in text


def test_a_fresh_run_then_a_resume_keeps_what_was_done(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    plan = parts.prepare({"x": 1}, range(6), world_size=2, resume=False, overwrite=False)
    assert (plan.complete, plan.attempt, plan.done) == (False, 1, ())
    _write(parts, plan, 0, [0, 1, 2])  # rank 0 finished; rank 1 died after its first part
    writer = parts.writer(plan, 1, 2)
    for key in (3, 4, 5):
        writer.append(key, key)
    writer.abort()
    assert [p.name for p in parts.parts()] == ["train-a001-r00000-s000000.json", "train-a001-r00000-s000001.json",
                                               "train-a001-r00001-s000000.json"]
    with pytest.raises(LfbError, match="rank 1 did not finish attempt 1 .*rerun test with --resume"):
        parts.finished()
    with pytest.raises(LfbError, match="holds results of an earlier test run .*pass --resume"):
        parts.prepare({"x": 1}, range(6), world_size=1, resume=False, overwrite=False)
    with pytest.raises(LfbError, match="holds an earlier test run with other settings .x 2 now, 1 there"):
        parts.prepare({"x": 2}, range(6), world_size=1, resume=False, overwrite=False)
    with pytest.raises(LfbError, match="refusing to resume with other settings: x 2 now, 1 in attempt 1"):
        parts.prepare({"x": 2}, range(6), world_size=1, resume=True, overwrite=False)
    again = parts.prepare({"x": 1}, range(6), world_size=1, resume=True, overwrite=False)
    assert (again.attempt, again.done) == (2, (0, 1, 2, 3, 4))
    _write(parts, again, 0, [5])
    paths, total = parts.finished()
    assert total == 6
    assert sorted(k for p in paths for k in JsonParts().keys(p, "")) == [0, 1, 2, 3, 4, 5]
    parts.remove()
    assert not parts.directory.exists()


def test_finished_refuses_a_missing_or_truncated_part(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    plan = parts.prepare({}, range(4), world_size=1, resume=False, overwrite=False)
    _write(parts, plan, 0, [0, 1, 2, 3])
    first, second = parts.parts()
    first.write_text(json.dumps({"0": 0}))
    with pytest.raises(LfbError, match="train rank 0 segment 0 of attempt 1 .*holds 1 items, its record says 2"):
        parts.finished()
    first.unlink()
    with pytest.raises(LfbError, match="segment 0 of attempt 1 .*segment is missing"):
        parts.finished()


def test_a_finished_output_completes_or_refuses_other_settings(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"settings": {"x": 1}}))
    final = Finished(out, lambda path: json.loads(path.read_text())["settings"])
    assert parts.prepare({"x": 1}, [1], world_size=1, resume=True, overwrite=False, final=final).complete
    with pytest.raises(LfbError, match=r"out.json: refusing to resume with other settings: x 2 now, 1 there"):
        parts.prepare({"x": 2}, [1], world_size=1, resume=True, overwrite=False, final=final)
    with pytest.raises(LfbError, match="to keep it, use --mode val; pass --overwrite only to replace it"):
        parts.prepare({"x": 2}, [1], world_size=1, resume=False, overwrite=False, final=final,
                      other_output_hint="use --mode val")
    plan = parts.prepare({"x": 2}, [1], world_size=1, resume=False, overwrite=True, final=final)
    assert not out.exists() and plan.attempt == 1


def test_modes_share_a_directory_without_touching_each_other(tmp_path: Path) -> None:
    train, val = _parts(tmp_path, "train"), _parts(tmp_path, "train.x")
    _write(train, train.prepare({}, [1, 2], world_size=1, resume=False, overwrite=False), 0, [1, 2])
    _write(val, val.prepare({}, [7], world_size=1, resume=False, overwrite=False), 0, [7])
    val.prepare({}, [7], world_size=1, resume=False, overwrite=True)
    assert len(train.parts()) == 1 and len(train.records()) == 2


def test_run_in_parts_in_one_process(tmp_path: Path) -> None:
    from lfbtool.runs.scaffold import run_in_parts
    from lfbtool.runtime.distributed import DistContext

    parts = _parts(tmp_path)
    seen = []

    def work(mine, writer) -> None:
        seen.append(list(mine))
        for key in mine:
            writer.append(key, key)

    def assemble(p: RunParts) -> list[int]:
        paths, _ = p.finished()
        return sorted(k for path in paths for k in JsonParts().keys(path, ""))

    run = run_in_parts(DistContext(), parts, settings={"a": 1}, keys=[3, 1, 2], work=work, assemble=assemble,
                       resume=False, overwrite=False, segment_size=2)
    assert seen == [[3, 1, 2]] and run.assembled == [1, 2, 3] and run.produced == 3 and run.resumed == 0
