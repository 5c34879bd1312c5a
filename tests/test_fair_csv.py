"""FAIR's 8-column predicted-box CSVs (``video,second,x1,y1,x2,y2,action_id|empty,score``) read like the
equivalent MMAction2 pickle, through ``build_keyframes``; a bad row is one line naming file and row."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lfbtool.data.ava import build_keyframes, read_proposals
from lfbtool.errors import LfbError

FAIR_ROWS = """\
vid_a,0902,0.077,0.151,0.283,0.811,,0.998803
vid_a,0902,0.332,0.194,0.481,0.891,,0.971938
vid_a,0902,0.5,0.5,0.6,0.7,,0.31
vid_a,0903,0.1,0.2,0.3,0.4,-1,0.5
vid_b,0902,0.2,0.2,0.6,0.9,12,0.95
vid_b,0902,0.2,0.2,0.6,0.9,17,0.95
"""
# the same boxes as MMAction2's proposals pickle (the repeated vid_b box is one person, two actions)
PICKLE = {
    "vid_a,0902": np.array([[0.077, 0.151, 0.283, 0.811, 0.998803], [0.332, 0.194, 0.481, 0.891, 0.971938],
                            [0.5, 0.5, 0.6, 0.7, 0.31]]),
    "vid_a,0903": np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]),
    "vid_b,0902": np.array([[0.2, 0.2, 0.6, 0.9, 0.95]]),
}


def keyframes(proposals, source="proposals"):
    seconds = [("vid_a", 902), ("vid_a", 903), ("vid_b", 902), ("vid_b", 903)]
    return build_keyframes(source=source, annotations=None, excluded=set(), proposals=proposals,
                           score_threshold=0.9, seconds=seconds)


@pytest.mark.parametrize("source", ["proposals", "every-second"])
def test_fair_csv_gives_the_keyframes_of_the_pickle(tmp_path, source):
    csv = tmp_path / "ava_val_predicted_boxes.csv"
    csv.write_text(FAIR_ROWS)
    pkl = tmp_path / "proposals.pkl"
    pkl.write_bytes(pickle.dumps(PICKLE))
    from_csv, skipped_csv = keyframes(read_proposals(csv), source)
    from_pkl, skipped_pkl = keyframes(read_proposals(pkl), source)
    assert [k.key for k in from_csv] == ["vid_a,0902", "vid_a,0903", "vid_b,0902"]
    for a, b in zip(from_csv, from_pkl, strict=True):
        assert a.key == b.key
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    # threshold 0.9: vid_a,0902 keeps its two best; vid_a,0903 keeps its only (best) box
    assert from_csv[0].scores.tolist() == pytest.approx([0.998803, 0.971938])
    assert len(from_csv[1].boxes) == 1
    assert skipped_csv == skipped_pkl
    if source == "every-second":
        assert [(s.key, s.reason) for s in skipped_csv] == [("vid_b,0903", "no person detected")]


def test_fair_csv_bad_score_is_one_line(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(FAIR_ROWS + "vid_c,0902,0.1,0.1,0.2,0.2,,high\n")
    with pytest.raises(LfbError, match=r"boxes\.csv: row 7: score 'high' is not a number") as info:
        read_proposals(csv)
    assert "\n" not in str(info.value)


def test_fair_csv_other_errors(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("vid,0902,0.1,0.1,0.2,0.2,walk,0.9\n")
    with pytest.raises(LfbError, match=r"boxes\.csv: row 1: action_id 'walk' is not an integer or empty"):
        read_proposals(csv)
    csv.write_text("vid,0902,0.1,0.1,0.2,0.2,,0.9\nvid,0903,0.1,0.1,0.2,0.2,0.9\n")
    with pytest.raises(LfbError, match=r"boxes\.csv: row 2: expected 8 columns"):
        read_proposals(csv)
    csv.write_text("vid,0902,0.1,0.1,0.2,0.2,,0.9,extra\n")
    with pytest.raises(LfbError, match=r"boxes\.csv: row 1: expected 6, 7 or 8 columns"):
        read_proposals(csv)


def test_bad_score_through_the_cli_leaves_nothing(tmp_path, capsys):
    from tests.conftest import run_in_process  # refused before any work: no process of its own needed

    csv = tmp_path / "boxes.csv"
    csv.write_text("vid,0902,0.1,0.1,0.2,0.2,,0.9\nvid,0903,0.1,0.1,0.2,0.2,,x\n")
    (tmp_path / "frames" / "vid").mkdir(parents=True)
    out = tmp_path / "out.pkl"
    done = run_in_process(["detect", "--out", str(out), "--keyframes", "proposals", "--proposals", str(csv),
                           "--frames-root", str(tmp_path / "frames"), "--detector",
                           "fasterrcnn_mobilenet_v3_large_320_fpn", "--detector-checkpoint", str(csv)], capsys)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "boxes.csv: row 2: score 'x' is not a number" in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.csv", "frames"]
