"""The extract summary's texts, rendered in this process: a cut skipped list ends with "+N more",
videos without a keyframe are counted and explained, and ``--no-merge`` says what was written
(parts) and how to merge, never "keyframes 0"."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from lfbtool.cli.extract_cmd import print_extract_summary
from lfbtool.data.ava import Keyframe, Skipped, read_proposals
from lfbtool.extract.outcome import no_keyframe_text, videos_without_keyframes
from lfbtool.extract.run import ExtractResult
from tests.conftest import run_in_process


def keyframe(video: str, timestamp: int) -> Keyframe:
    return Keyframe(video, timestamp, np.zeros((1, 4), np.float32), np.ones(1, np.float32))


def summary(result: ExtractResult, capsys) -> dict[str, list[str]]:
    """The printed rows by name (continuation rows under the name above them)."""
    capsys.readouterr()
    print_extract_summary(result)
    rows: dict[str, list[str]] = {}
    name = ""
    for line in capsys.readouterr().out.splitlines():
        head, value = line[:11].strip(), line[11:]
        name = head or name
        rows.setdefault(name, []).append(value)
    return rows


def test_videos_without_a_keyframe_are_counted_with_their_reasons():
    kept = [keyframe("vid_a", 902)]
    skipped = [Skipped("vid_b", 902, "no proposals"), Skipped("vid_b", 903, "no proposals"),
               Skipped("vid_c", 902, "no proposals"), Skipped("vid_a", 903, "no proposals")]
    total, why = videos_without_keyframes(kept, skipped)
    assert total == 3 and why == {"vid_b": "no proposals", "vid_c": "no proposals"}  # vid_a has one
    assert no_keyframe_text(why) == "2 gave no keyframe: no proposals (vid_b, vid_c)"
    total, why = videos_without_keyframes(kept, [Skipped("vid_d", 5, "no person detected")],
                                          ["vid_a", "vid_d", "short"], no_clip="too short for one whole clip")
    assert total == 3 and why == {"vid_d": "no person detected", "short": "too short for one whole clip"}
    assert no_keyframe_text(why) == ("2 gave no keyframe: no person detected (vid_d); "
                                     "too short for one whole clip (short)")
    many = {f"v{i}": "no proposals" for i in range(5)} | {f"w{i}": f"reason {i}" for i in range(4)}
    text = no_keyframe_text(many)
    assert text.startswith("9 gave no keyframe: no proposals (v0, v1, v2, +2 more); reason 0 (w0); reason 1 (w1); ")
    assert text.endswith("+2 more reasons")


def test_a_cut_skipped_list_ends_with_how_many_more(tmp_path, capsys):
    skipped = [Skipped("vid_a", 900 + i, "no proposals") for i in range(8)]
    result = ExtractResult(output=tmp_path / "lfb_train.h5", shards_dir=tmp_path / "shards", videos=1, keyframes=2,
                           skipped=skipped, input_videos=1)
    (tmp_path / "lfb_train.h5").write_bytes(b"")
    rows = summary(result, capsys)
    assert rows["skipped"] == ["8 (8 no proposals)", *[f"vid_a,{900 + i:04d}: no proposals" for i in range(5)],
                               "+3 more"]
    assert rows["videos"] == ["1"]


def test_the_videos_row_names_the_videos_without_a_keyframe(tmp_path, capsys):
    result = ExtractResult(output=tmp_path / "lfb_train.h5", shards_dir=tmp_path / "shards", videos=1, keyframes=2,
                           input_videos=3, no_keyframe={"vid_b": "no proposals", "vid_c": "no proposals"})
    assert summary(result, capsys)["videos"] == ["1 of 3 (2 gave no keyframe: no proposals (vid_b, vid_c))"]


def test_no_merge_says_parts_and_how_to_merge(tmp_path, capsys):
    result = ExtractResult(output=None, shards_dir=tmp_path / "shards", videos=3, keyframes=7, boxes=12,
                           extracted_now=7, parts=4, out=tmp_path, mode="val")
    rows = summary(result, capsys)
    assert rows["keyframes"] == ["7 in 4 parts, not merged into a bank yet (7 extracted now, 0 resumed)"]
    assert rows["output"] == [f"parts in {tmp_path / 'shards'}"]
    assert rows["next"][0].startswith(f"lfbtool merge {tmp_path} --mode val ")


def test_a_real_no_merge_run_reports_its_parts(no_merge_run, tiny_data):
    from tests.extract_runs import expected_keys

    out = no_merge_run.stdout
    assert not re.search(r"^keyframes\s+0\b", out, re.M) and not re.search(r"^videos\s+0\b", out, re.M), out
    segments = sorted((no_merge_run.out / "shards").glob("train-a*-r*-s*.h5"))
    count = len(expected_keys(tiny_data.example))
    assert f"keyframes  {count} in {len(segments)} parts, not merged into a bank yet" in out, out
    assert f"lfbtool merge {no_merge_run.out} --mode train" in out
    assert re.search(r"^videos\s+3$", out, re.M), out


def test_a_real_run_names_the_videos_that_gave_no_keyframe(tiny_data, tmp_path, capsys):
    ex = tiny_data.example
    only_a = {f"{video},{ts:04d}": boxes.astype(np.float64)
              for (video, ts), boxes in read_proposals(ex.proposals_pkl).items() if video == "vid_a"}
    proposals = tmp_path / "vid_a_only.pkl"
    proposals.write_bytes(pickle.dumps(only_a))
    args = tiny_data.extract_args(tmp_path / "out")
    args[args.index("--proposals") + 1] = str(proposals)
    done = run_in_process([*args, "--device", "cpu"], capsys)
    assert done.returncode == 0, done.stderr
    assert "videos     1 of 3 (2 gave no keyframe: no proposals (vid_b, vid_c))" in done.stdout, done.stdout
    assert Path(tmp_path / "out" / "lfb_train.h5").is_file()
