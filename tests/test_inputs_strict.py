"""Strict inputs (issue 13.7): video ids stay inside their roots, timestamps fit the bank, empty frame
directories and keyframes outside their video are caught before anything is written."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from lfbtool.data.ava import read_annotations, read_excluded, read_proposals
from lfbtool.data.frames import open_source
from lfbtool.errors import LfbError
from tests.conftest import run_in_process
from tests.test_extract_errors import args_for, assert_one_line_error, copy_of, no_bank_anywhere, run_cli  # noqa: F401


@pytest.mark.parametrize("video_id", ["../etc", "/abs/path", "a/../../b", "x\\y", "a\0b", "v" * 201, ".", " "])
def test_video_ids_that_leave_their_root_are_refused_naming_file_and_row(tmp_path, video_id):
    csv = tmp_path / "ann.csv"
    csv.write_text("ok,0902,0.1,0.1,0.5,0.5,1,0\n" + f"{video_id},0903,0.1,0.1,0.5,0.5,1,0\n")
    with pytest.raises(LfbError, match=r"ann\.csv: row 2: video_id .*"):
        read_annotations(csv)
    excluded = tmp_path / "excluded.csv"
    excluded.write_text(f"{video_id},0902\n")
    with pytest.raises(LfbError, match=r"excluded\.csv: row 1: video_id"):
        read_excluded(excluded)
    pkl = tmp_path / "proposals.pkl"
    pkl.write_bytes(pickle.dumps({f"{video_id},0902": np.array([[0.1, 0.1, 0.5, 0.5, 0.95]])}))
    with pytest.raises(LfbError, match=r"proposals\.pkl: key .*video_id"):
        read_proposals(pkl)
    with pytest.raises(LfbError, match="video id"):
        open_source(video_id, frames_root=tmp_path)


def test_nested_ids_inside_the_root_are_fine(tmp_path):
    (tmp_path / "class_a" / "clip_1").mkdir(parents=True)
    assert open_source("class_a/clip_1", frames_root=tmp_path).path == tmp_path / "class_a" / "clip_1"


def test_timestamps_beyond_int32_are_refused(tmp_path):
    csv = tmp_path / "ann.csv"
    csv.write_text(f"vid,{2**31},0.1,0.1,0.5,0.5,1,0\n")
    with pytest.raises(LfbError, match=r"ann\.csv: row 1: timestamp 2147483648 is outside the int32 range"):
        read_annotations(csv)


def test_an_empty_frame_directory_fails_before_anything_is_written(tiny_data, copy_of, tmp_path, capsys):  # noqa: F811
    video = tiny_data.example.video_ids[1]
    frames = copy_of / "frames" / video
    shutil.rmtree(frames)
    frames.mkdir()
    out = tmp_path / "out"
    code, lines = run_cli(args_for(tiny_data, copy_of, out), capsys)
    assert_one_line_error(code, lines, str(frames), "no frames")
    assert no_bank_anywhere(tmp_path) and not (out / "shards").exists() or not any((out / "shards").iterdir())
    assert not [p for p in out.rglob("*") if p.suffix in (".h5", ".json")]


def test_a_keyframe_outside_its_video_is_skipped_and_reported(tiny_data, copy_of, tmp_path, capsys):  # noqa: F811
    example = tiny_data.example
    video = example.video_ids[0]
    far = example.timestamp_start + example.seconds + 5  # centre frame past the last frame
    with open(copy_of / "annotations.csv", "a") as handle:
        handle.write(f"{video},{far:04d},0.1,0.1,0.5,0.5,1,0\n")
    with open(copy_of / "proposals.pkl", "rb") as handle:
        proposals = pickle.load(handle)
    proposals[f"{video},{far:04d}"] = np.array([[0.1, 0.1, 0.5, 0.5, 0.95]])
    (copy_of / "proposals.pkl").write_bytes(pickle.dumps(proposals))
    out = tmp_path / "out"
    done = run_in_process(args_for(tiny_data, copy_of, out), capsys)
    assert done.returncode == 0, done.stderr
    assert f"{video},{far:04d}: centre frame outside the video ({example.num_frames} frames)" in done.stdout
    from tests.extract_runs import bank_keys

    assert (video, far) not in bank_keys(out / "lfb_train.h5")
