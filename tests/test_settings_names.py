"""Settings named once: one mode rule for every command (issue 20.14), two thresholds with two names and
nothing cut silently (issue 21.3), and a refusal that suggests --mode before --overwrite (issue 21.4)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from lfbtool.data.ava import read_proposals
from lfbtool.keys import key_text
from tests.conftest import run_in_process

BAD_MODES = ["train-x", "../a", "", "a b", "val/1"]


def _error_lines(done) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["extract", "merge", "import"])
@pytest.mark.parametrize("mode", BAD_MODES)
def test_every_command_that_takes_a_mode_refuses_the_same_bad_names(command, mode, tmp_path, capsys):
    """`detect` takes no --mode (its parts are named "detect"); every command that does uses check_mode."""
    out = tmp_path / "out"
    if command == "extract":
        args = ["extract", "--out", str(out), "--mode", mode, "--frames-root", str(tmp_path)]
    elif command == "merge":
        out.mkdir()
        args = ["merge", str(out), "--mode", mode]
    else:
        pkl = tmp_path / "lfb_train.pkl"
        pkl.write_bytes(pickle.dumps({}))
        args = ["import", str(pkl), "-o", str(out / "lfb.h5"), "--mode", mode]
    done = run_in_process(args, capsys)
    lines = _error_lines(done)
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --mode must be a plain name"), lines
    assert repr(mode) in lines[0]
    assert not list(tmp_path.rglob("*.h5")) and not (out / "shards").exists()


def test_import_refuses_a_mode_taken_from_a_bad_file_name(tmp_path, capsys):
    pkl = tmp_path / "lfb_train-x.pkl"
    pkl.write_bytes(pickle.dumps({}))
    done = run_in_process(["import", str(pkl), "-o", str(tmp_path / "b.h5")], capsys)
    lines = _error_lines(done)
    assert done.returncode == 2 and len(lines) == 1 and "'train-x'" in lines[0] and "pass --mode" in lines[0]


def _detector_proposals(tiny_data, directory: Path, low: float = 0.65, high: float = 0.86) -> tuple[Path, int]:
    """The tiny dataset's proposals as `lfbtool detect` would have written them at --score-threshold 0.5:
    every score in [low, high] (below extract's old 0.9), with the sidecar that says so."""
    proposals = read_proposals(tiny_data.example.proposals_pkl)
    rng = np.random.default_rng(0)
    data, boxes = {}, 0
    for key, rows in proposals.items():
        rows = np.array(rows, dtype=np.float32)
        rows[:, 4] = rng.uniform(low, high, len(rows)).astype(np.float32)
        data[key_text(*key)] = rows
        boxes += len(rows)
    path = directory / "persons.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    example = tiny_data.example  # the frames extract reads: the ones detect found the boxes on
    settings = {"score_threshold": 0.5, "max_per_frame": 100, "keyframes": "proposals", "fps": example.fps,
                "timestamp_start": example.timestamp_start, "start_index": 1, "clip_len": 4, "frame_interval": 2}
    sidecar = {"format": "mmaction2-proposals-pkl", "settings": settings,
               "keyframes": len(data), "keyframes_with_persons": len(data), "boxes": boxes}
    Path(f"{path}.json").write_text(json.dumps(sidecar))
    return path, boxes


def _bank_boxes(bank: Path) -> tuple[int, float]:
    with h5py.File(bank, "r") as handle:
        scores = handle["scores"][()]
    return len(scores), float(np.nanmin(scores))


def _boxes_at_bank_keys(bank: Path, proposals: Path) -> int:
    """How many proposals the bank's keyframes have in ``proposals``: all of them kept means this many rows."""
    with h5py.File(bank, "r") as handle:
        videos = [v.decode() for v in handle["videos"][()]]
        offsets, timestamps = handle["video_key_offsets"][()], handle["timestamps"][()]
    found = read_proposals(proposals)
    return sum(len(found[(video, int(t))]) for i, video in enumerate(videos)
               for t in timestamps[offsets[i]:offsets[i + 1]])


def _inspect_text(bank: Path, capsys) -> str:
    """`lfbtool inspect` as one line of words (the table's borders and wrapping removed)."""
    done = run_in_process(["inspect", str(bank)], capsys)
    assert done.returncode == 0, done.stderr
    return re.sub(r"[\s│]+", " ", done.stdout)


def _with(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def test_extract_keeps_what_the_detector_kept_unless_told(tiny_data, tmp_path, capsys):
    """Issue 21.3's case: the detector kept persons scoring 0.65-0.86 at its 0.5; extract must keep them
    all (it used to cut them with its own 0.9 without a word), and say which threshold applied."""
    proposals, boxes = _detector_proposals(tiny_data, tmp_path)
    base = _with(tiny_data.extract_args(tmp_path / "kept"), "--proposals", str(proposals))
    done = run_in_process(base, capsys)
    assert done.returncode == 0, done.stderr
    stored, lowest = _bank_boxes(tmp_path / "kept" / "lfb_train.h5")
    assert stored == _boxes_at_bank_keys(tmp_path / "kept" / "lfb_train.h5", proposals) and lowest < 0.9
    filters = next(line for line in done.stdout.splitlines() if line.startswith("filters"))
    assert "proposal score >= 0.5 (the detector's" in filters and "removed 0" in filters
    text = _inspect_text(tmp_path / "kept" / "lfb_train.h5", capsys)
    assert "score >= 0.9" not in text and "no further proposal filter (the detector's threshold applied)" in text

    # told otherwise: the proposal filter cuts, the summary counts what it removed, inspect says the rule
    told = run_in_process(_with(base, "--out", str(tmp_path / "told")) + ["--proposal-score-threshold", "0.9"], capsys)
    assert told.returncode == 0, told.stderr
    fewer, lowest_told = _bank_boxes(tmp_path / "told" / "lfb_train.h5")
    assert fewer < stored
    filters = next(line for line in told.stdout.splitlines() if line.startswith("filters"))
    assert f"proposal score >= 0.9 (or a keyframe's best) removed {stored - fewer}" in filters
    text = _inspect_text(tmp_path / "told" / "lfb_train.h5", capsys)
    assert "score >= 0.9, or a keyframe's best boxes when none reaches it" in text
    assert f"stored scores {round(lowest_told, 4):g}" in text and lowest_told < 0.9


def test_old_score_threshold_flag_still_works_with_a_note(tiny_data, tmp_path, capsys):
    args = tiny_data.extract_args(tmp_path / "old") + ["--score-threshold", "0.95"]
    done = run_in_process(args, capsys)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: --score-threshold is now --proposal-score-threshold (the old name still works for now)"]
    config = json.loads(h5py.File(tmp_path / "old" / "lfb_train.h5", "r").attrs["config"])
    assert config["score_threshold"] == 0.95 and "proposal_score_threshold" not in config  # the recorded key stays


def test_forgotten_mode_is_suggested_before_overwrite(tiny_data, tmp_path, capsys):
    """Issue 21.4: val inputs run into the train OUT without --mode: the refusal names the input that
    changed and suggests --mode NAME first; --overwrite only for the same mode's inputs."""
    out = tmp_path / "out"
    assert run_in_process(tiny_data.extract_args(out), capsys).returncode == 0
    val = tmp_path / "val.csv"
    rows = tiny_data.example.annotations_csv.read_text().splitlines()
    val.write_text("\n".join(rows[: len(rows) // 2]) + "\n")
    done = run_in_process(_with(tiny_data.extract_args(out), "--annotations", str(val)), capsys)
    lines = _error_lines(done)
    assert done.returncode == 2 and len(lines) == 1, lines
    line = lines[0]
    assert "annotations: other file content now than there" in line
    assert "--mode NAME" in line and line.index("--mode NAME") < line.index("--overwrite")
    assert "only if mode train's inputs were meant to change" in line

    same_inputs = run_in_process(tiny_data.extract_args(out) + ["--short-side", "24"], capsys)
    line = _error_lines(same_inputs)[0]
    assert "short_side 24 now, 32 there" in line and "--overwrite" in line and "--mode" not in line


def test_merge_of_banks_with_other_settings_names_them_in_words(tmp_path):
    """Not only two fingerprints: the compute settings that differ, from the banks' recorded configs."""
    from lfbtool.bank.merge import merge_banks
    from lfbtool.bank.writer import BankWriter
    from lfbtool.errors import LfbError
    from lfbtool.extract.config import build_config, fingerprint, resolved_dict

    base = {"frames_root": Path("/f"), "proposals": Path("/p.pkl"), "annotations": Path("/a.csv")}
    paths = []
    for name, clip_len in (("a", 4), ("b", 8)):
        resolved = resolved_dict(build_config(None, {**base, "clip_len": clip_len}), "abc")
        path = tmp_path / f"{name}.h5"
        with BankWriter(path, feature_dim=2, dtype="float16", mode="train", config_json=json.dumps(resolved),
                        config_fingerprint=fingerprint(resolved)) as writer:
            writer.append(name, 902, np.ones((1, 2)), np.zeros((1, 4)), np.ones(1))
        paths.append(path)
    with pytest.raises(LfbError, match=r"config_fingerprint '\w+' differs from '\w+' in .*a\.h5 "
                                       r"\(clip_len 8 there, 4 in .*a\.h5\); banks built with different settings"):
        merge_banks(paths, tmp_path / "m.h5")


def test_each_filter_counts_what_it_removed():
    """Hand-counted: the detector's threshold and per-frame cap, the proposal filter (MMAction2's rule:
    a keyframe with no box at the threshold keeps its best) and the per-keyframe cap."""
    import torch

    from lfbtool.data.ava import build_keyframes
    from lfbtool.models.detector import person_boxes

    removed: dict[str, int] = {}
    output = {"labels": torch.tensor([1, 1, 1, 2, 1]), "scores": torch.tensor([0.9, 0.8, 0.3, 0.95, 0.1]),
              "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]] * 5)}
    kept = person_boxes(output, 10, 10, score_threshold=0.5, max_per_frame=1, removed=removed)
    assert len(kept) == 1 and removed == {"detector_score_threshold": 2, "max_per_frame": 1}

    proposals = {("v", 1): np.array([[0, 0, 1, 1, 0.95], [0, 0, 1, 1, 0.5], [0, 0, 1, 1, 0.3]], np.float32),
                 ("v", 2): np.array([[0, 0, 1, 1, 0.6], [0, 0, 1, 1, 0.6], [0, 0, 1, 1, 0.4]], np.float32)}
    removed = {}
    keyframes, _ = build_keyframes(source="proposals", annotations=None, excluded=set(), proposals=proposals,
                                   score_threshold=0.9, max_proposals=1, removed=removed)
    # v,1: 0.5 and 0.3 below 0.9; v,2: none reaches 0.9, so its best (0.6, twice) stay, then the cap keeps 1
    assert [len(k.boxes) for k in keyframes] == [1, 1]
    assert removed == {"proposal_score_threshold": 3, "max_proposals": 1}
