"""AVA CSV / proposal parsing, validation messages, and MMAction2's keyframe and box selection."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from lfbtool.data.ava import (
    Keyframe,
    build_keyframes,
    read_annotations,
    read_excluded,
    read_proposals,
)
from lfbtool.errors import LfbError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def dump(path: Path, obj: object) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)
    return path


def test_annotations_unique_boxes_first_seen(tmp_path):
    path = write(tmp_path / "ann.csv", (
        "vid_b,0902,0.1,0.2,0.5,0.9,12,0\n"
        "vid_a,0903,0.2,0.2,0.4,0.4,5,1\n"
        "vid_a,0903,0.0,0.1,0.3,1.0,7,0\n"
        "\n"
        "vid_a,0903,0.2,0.2,0.4,0.4,11,1\n"  # same box, another action
        "vid_a,0904,0.100,0.2,0.5,0.9,,\n"  # empty action / person ids
        "vid_a,905,0,0,1,1\n"  # no id columns, unpadded timestamp
    ))
    ann = read_annotations(path)
    assert list(ann) == [("vid_b", 902), ("vid_a", 903), ("vid_a", 904), ("vid_a", 905)]
    boxes = ann[("vid_a", 903)]
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    np.testing.assert_array_equal(boxes, np.array([[0.2, 0.2, 0.4, 0.4], [0.0, 0.1, 0.3, 1.0]], dtype=np.float32))
    assert ann[("vid_a", 905)].tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize(
    ("text", "row", "words"),
    [
        ("vid,0902,0.1,0.2,0.5,0.9,1,0\nvid,0902,0.1,0.2\n", 2, "expected 8 columns"),
        ("vid,0902,0.1,0.2,0.5,0.9,1,0,3,4\n", 1, "got 10"),
        ("vid,0902,0.1,abc,0.5,0.9,1,0\n", 1, "y1 'abc' is not a number"),
        ("video_id,timestamp,x1,y1,x2,y2,action_id,person_id\n", 1, "no header"),
        ("vid,0902,0.1,0.2,0.5,0.9,1,0\n\nvid,902.5,0.1,0.2,0.5,0.9,1,0\n", 3, "timestamp '902.5' is not an integer"),
        ("vid,0902,0.1,0.2,1.5,0.9,1,0\n", 1, "outside [0, 1]"),
        ("vid,0902,-0.1,0.2,0.5,0.9,1,0\n", 1, "outside [0, 1]"),
        ("vid,0902,0.6,0.2,0.5,0.9,1,0\n", 1, "x2 < x1"),
        ("vid,0902,0.1,0.95,0.5,0.9,1,0\n", 1, "y2 < y1"),
        ("vid,0902,nan,0.2,0.5,0.9,1,0\n", 1, "not a finite number"),
        (",0902,0.1,0.2,0.5,0.9,1,0\n", 1, "video_id '' is empty"),
    ],
)
def test_annotation_errors_name_file_and_row(tmp_path, text, row, words):
    path = write(tmp_path / "ann.csv", text)
    with pytest.raises(LfbError) as info:
        read_annotations(path)
    message = str(info.value)
    assert str(path) in message and f"row {row}:" in message and words in message
    assert "\n" not in message


def test_missing_files(tmp_path):
    for reader in (read_annotations, read_excluded, read_proposals):
        for name in ("nope.csv", "nope.pkl"):
            with pytest.raises(LfbError, match=r"nope\.(csv|pkl): no such file"):
                reader(tmp_path / name)


def test_excluded(tmp_path):
    path = write(tmp_path / "ex.csv", "vid_a,0902\r\nvid_b,1000\r\n")
    assert read_excluded(path) == {("vid_a", 902), ("vid_b", 1000)}
    bad = write(tmp_path / "bad.csv", "vid_a,0902\nvid_a,0903,1\n")
    with pytest.raises(LfbError, match=r"bad\.csv: row 2: expected 2 columns"):
        read_excluded(bad)
    bad = write(tmp_path / "bad2.csv", "vid_a,09o2\n")
    with pytest.raises(LfbError, match=r"bad2\.csv: row 1: timestamp '09o2' is not an integer"):
        read_excluded(bad)


def test_proposals_pkl_and_csv_agree(tmp_path):
    proposals = {
        "vid_a,0902": np.array([[0.011, 0.157, 0.655, 0.983, 0.998163]]),
        "vid_a,0912": np.array([[0.054, 0.088, 0.91, 0.998, 0.068273], [0.016, 0.161, 0.519, 0.974, 0.984025]]),
    }
    pkl = read_proposals(dump(tmp_path / "p.pkl", proposals))
    csv = read_proposals(write(tmp_path / "p.csv", "".join(
        f"{k},{','.join(repr(float(v)) for v in row)}\n" for k, a in proposals.items() for row in a
    )))
    assert set(pkl) == set(csv) == {("vid_a", 902), ("vid_a", 912)}
    for key in pkl:
        assert pkl[key].dtype == np.float32 and pkl[key].shape[1] == 5
        np.testing.assert_array_equal(pkl[key], csv[key])
    four = read_proposals(write(tmp_path / "p4.csv", "vid,0902,0.1,0.1,0.2,0.2\nvid,0902,0.3,0.3,0.4,0.4\n"))
    assert four[("vid", 902)].shape == (2, 4)


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"vid,0902": np.zeros((2, 3))}, "key 'vid,0902': expected a numeric [n, 4] or [n, 5] array, got shape (2, 3)"),
        ({"vid,0902": np.zeros(5)}, "key 'vid,0902': expected a numeric"),
        ({"vid,0902": "boxes"}, "key 'vid,0902': expected a numeric [n, 4] or [n, 5] array, got str"),
        ({"vid0902": np.zeros((1, 5))}, "key 'vid0902': keys must be 'video_id,timestamp'"),
        ({"vid,09x2": np.zeros((1, 5))}, "key 'vid,09x2': timestamp '09x2' is not an integer"),
        ({3: np.zeros((1, 5))}, "key 3: keys must be"),
        ({"vid,0902": np.array([[0.1, 0.1, 1.2, 0.5, 0.9]])}, "key 'vid,0902' box 0: box [0.1, 0.1, 1.2, 0.5]: x2 1.2 is outside"),
        ({"vid,0902": np.array([[0.5, 0.1, 0.2, 0.5, 0.9]])}, "key 'vid,0902' box 0: box [0.5, 0.1, 0.2, 0.5] has x2 < x1"),
        ({"vid,902": np.zeros((1, 5)), "vid,0902": np.zeros((1, 5))}, "key 'vid,0902': duplicate"),
        ([np.zeros((1, 5))], "expected a dict"),
    ],
)
def test_proposal_pkl_errors_name_file_and_key(tmp_path, obj, words):
    path = dump(tmp_path / "props.pkl", obj)
    with pytest.raises(LfbError) as info:
        read_proposals(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_proposal_pkl_is_not_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = dump(tmp_path / "evil.pkl", {"vid,0902": Payload()})
    with pytest.raises(LfbError, match="evil.pkl"):
        read_proposals(path)


def test_proposal_csv_errors(tmp_path):
    path = write(tmp_path / "props.csv", "vid,0902,0.1,0.1,0.2,0.2,0.9\nvid,0903,0.1,0.1,0.2,0.2\n")
    with pytest.raises(LfbError, match=r"props\.csv: row 2: expected 7 columns"):
        read_proposals(path)
    path = write(tmp_path / "props2.csv", "vid,0902,0.1,0.1,0.2,0.2,high\n")
    with pytest.raises(LfbError, match=r"props2\.csv: row 1: score 'high' is not a number"):
        read_proposals(path)
    with pytest.raises(LfbError, match="unsupported proposals format"):
        read_proposals(write(tmp_path / "props.txt", ""))


def box(i: float) -> list[float]:
    return [0.1 * i, 0.1, 0.1 * i + 0.05, 0.5]


ANNOTATIONS = {
    ("vid_b", 902): np.array([box(1)], dtype=np.float32),
    ("vid_a", 905): np.array([box(2), box(3)], dtype=np.float32),
    ("vid_a", 902): np.array([box(4)], dtype=np.float32),
    ("vid_a", 903): np.array([box(5)], dtype=np.float32),
    ("vid_a", 904): np.array([box(6)], dtype=np.float32),
}
PROPOSALS = {
    ("vid_a", 902): np.array([box(1) + [0.95], box(2) + [0.5], box(3) + [0.92], box(4) + [0.9]], dtype=np.float32),
    ("vid_a", 903): np.array([box(1) + [0.85], box(2) + [0.6], box(3) + [0.85]], dtype=np.float32),  # none >= 0.9
    ("vid_a", 904): np.array([box(1) + [0.99]], dtype=np.float32),
    ("vid_b", 902): np.array([box(7), box(8)], dtype=np.float32),  # [n, 4]: no scores
    ("vid_c", 910): np.array([box(9) + [0.97]], dtype=np.float32),  # not annotated
}


def test_annotated_keyframes_select_like_mmaction2():
    keyframes, skipped = build_keyframes(
        source="annotated", annotations=ANNOTATIONS, excluded={("vid_a", 904)}, proposals=PROPOSALS
    )
    assert [k.key for k in keyframes] == ["vid_a,0902", "vid_a,0903", "vid_b,0902"]
    assert [(s.video_id, s.timestamp, s.reason) for s in skipped] == [("vid_a", 905, "no proposals")]
    first, low, unscored = keyframes
    # scores >= 0.9 in file order; 0.9 itself passes (compared in float32)
    np.testing.assert_array_equal(first.boxes, np.array([box(1), box(3), box(4)], dtype=np.float32))
    np.testing.assert_array_equal(first.scores, np.array([0.95, 0.92, 0.9], dtype=np.float32))
    # none passes 0.9: the threshold drops to the best score, 0.85, and both 0.85 boxes stay
    np.testing.assert_array_equal(low.scores, np.array([0.85, 0.85], dtype=np.float32))
    np.testing.assert_array_equal(low.boxes, np.array([box(1), box(3)], dtype=np.float32))
    assert unscored.boxes.shape == (2, 4) and np.isnan(unscored.scores).all()
    for k in keyframes:
        assert k.boxes.dtype == np.float32 and k.scores.dtype == np.float32


def test_whole_frame_fallback_and_max_proposals():
    keyframes, skipped = build_keyframes(
        source="annotated", annotations=ANNOTATIONS, excluded=set(), proposals=PROPOSALS,
        whole_frame_fallback=True, max_proposals=1,
    )
    assert skipped == []
    by_key = {k.key: k for k in keyframes}
    assert by_key["vid_a,0905"].boxes.tolist() == [[0, 0, 1, 1]] and by_key["vid_a,0905"].scores.tolist() == [1]
    assert by_key["vid_a,0902"].scores.tolist() == [np.float32(0.95)]
    assert len(by_key["vid_b,0902"].boxes) == 1


def test_annotated_without_proposals_uses_annotation_boxes():
    keyframes, skipped = build_keyframes(source="annotated", annotations=ANNOTATIONS, excluded=set(), proposals=None)
    assert skipped == [] and [k.key for k in keyframes][:2] == ["vid_a,0902", "vid_a,0903"]
    np.testing.assert_array_equal(keyframes[3].boxes, ANNOTATIONS[("vid_a", 905)])
    assert all(np.isnan(k.scores).all() and len(k.scores) == len(k.boxes) for k in keyframes)


def test_proposal_keyframes_are_every_proposal_key():
    keyframes, skipped = build_keyframes(
        source="proposals", annotations=None, excluded={("vid_b", 902)}, proposals=PROPOSALS
    )
    assert [k.key for k in keyframes] == ["vid_a,0902", "vid_a,0903", "vid_a,0904", "vid_c,0910"]
    assert skipped == []


def test_build_keyframes_argument_errors():
    with pytest.raises(LfbError, match="annotations"):
        build_keyframes(source="annotated", annotations=None, excluded=set(), proposals=PROPOSALS)
    with pytest.raises(LfbError, match="proposals"):
        build_keyframes(source="proposals", annotations=ANNOTATIONS, excluded=set(), proposals=None)
    with pytest.raises(LfbError, match="threshold"):
        build_keyframes(source="proposals", annotations=None, excluded=set(), proposals=PROPOSALS, score_threshold=1.5)


def test_keyframe_key():
    frame = Keyframe("vid", 5, np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert frame.key == "vid,0005"
    assert Keyframe("vid", 1798, frame.boxes, frame.scores).key == "vid,1798"
