"""Each bad input: one line naming the file and the row or key, a non-zero exit, and no bank file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import run_in_process


def run_cli(args: list[str], capsys) -> tuple[int, list[str]]:
    """The console script in-process: exit code and the non-empty stderr lines."""
    done = run_in_process(args, capsys)
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def no_bank_anywhere(root: Path) -> bool:
    return not list(root.rglob("lfb_*.h5"))


@pytest.fixture
def copy_of(tiny_data, tmp_path):
    """A private copy of the tiny dataset that a test may damage."""
    example = tiny_data.example
    root = tmp_path / "data"
    shutil.copytree(example.root, root)
    return root


def args_for(tiny_data, root: Path, out: Path, *, videos: bool = False, **changes: str) -> list[str]:
    args = tiny_data.extract_args(out, videos=videos)
    original = str(tiny_data.example.root)
    args = [a.replace(original, str(root)) if a.startswith(original) else a for a in args]
    for option, value in changes.items():
        flag = "--" + option.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def assert_one_line_error(code: int, lines: list[str], *needles: str) -> None:
    assert code != 0
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_missing_frame_directory(tiny_data, copy_of, tmp_path, capsys):
    video = tiny_data.example.video_ids[0]
    shutil.rmtree(copy_of / "frames" / video)
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out"), capsys)
    assert_one_line_error(code, lines, video, str(copy_of / "frames"))
    assert no_bank_anywhere(tmp_path)


def test_missing_frame_file(tiny_data, copy_of, tmp_path, capsys):
    video = tiny_data.example.video_ids[0]
    missing = copy_of / "frames" / video / "img_00010.jpg"  # read by the clip of timestamp 902
    missing.unlink()
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out"), capsys)
    assert_one_line_error(code, lines, str(missing))
    assert no_bank_anywhere(tmp_path)


def test_truncated_video(tiny_data, copy_of, tmp_path, capsys):
    video = tiny_data.example.video_ids[0]
    path = copy_of / "videos" / f"{video}.mp4"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out", videos=True), capsys)
    assert_one_line_error(code, lines, str(path))
    assert no_bank_anywhere(tmp_path)


def test_corrupt_video(tiny_data, copy_of, tmp_path, capsys):
    video = tiny_data.example.video_ids[1]
    path = copy_of / "videos" / f"{video}.mp4"
    path.write_bytes(b"\x00not a video at all" * 100)
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out", videos=True), capsys)
    assert_one_line_error(code, lines, str(path))
    assert no_bank_anywhere(tmp_path)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("vid_a,0902,0.1,0.1,0.5", "row 3"),  # too few columns
        ("vid_a,0902,0.1,zero,0.5,0.5,1,0", "row 3"),  # not a number
        ("vid_a,0902,0.1,0.1,1.5,0.5,1,0", "row 3"),  # outside [0, 1]
        ("vid_a,0902,0.6,0.1,0.5,0.5,1,0", "row 3"),  # x2 < x1
    ],
)
def test_bad_annotation_row(tiny_data, copy_of, tmp_path, capsys, row, needle):
    csv_path = copy_of / "annotations.csv"
    lines_in = csv_path.read_text().splitlines()
    lines_in.insert(2, row)
    csv_path.write_text("\n".join(lines_in) + "\n")
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out"), capsys)
    assert_one_line_error(code, lines, str(csv_path), needle)
    assert no_bank_anywhere(tmp_path)


def test_bad_proposal_row(tiny_data, copy_of, tmp_path, capsys):
    csv_path = copy_of / "proposals.csv"
    rows = csv_path.read_text().splitlines()
    rows.insert(0, "vid_a,0902,0.9,0.1,0.2,0.5,0.95")  # x2 < x1 on row 1
    csv_path.write_text("\n".join(rows) + "\n")
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out", proposals=str(csv_path)), capsys)
    assert_one_line_error(code, lines, str(csv_path), "row 1")
    assert no_bank_anywhere(tmp_path)


def test_unknown_video_id(tiny_data, copy_of, tmp_path, capsys):
    csv_path = copy_of / "annotations.csv"
    csv_path.write_text(csv_path.read_text() + "no_such_video,0902,0.1,0.1,0.5,0.5,1,0\n")
    proposals = copy_of / "proposals.csv"
    proposals.write_text(proposals.read_text() + "no_such_video,0902,0.1,0.1,0.5,0.5,0.99\n")
    code, lines = run_cli(args_for(tiny_data, copy_of, tmp_path / "out", proposals=str(proposals)), capsys)
    assert_one_line_error(code, lines, "no_such_video")
    assert no_bank_anywhere(tmp_path)


def test_checkpoint_with_wrong_shapes(tiny_data, tmp_path, capsys):
    state = torch.load(tiny_data.checkpoint, weights_only=True)
    state["state_dict"]["backbone.layer1.0.conv1.conv.weight"] = torch.zeros(64, 64, 3, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    code, lines = run_cli(tiny_data.extract_args(tmp_path / "out") + ["--checkpoint", str(bad)], capsys)
    assert_one_line_error(code, lines, str(bad), "layer1.0.conv1.conv.weight", "(64, 64, 3, 1, 1)")
    assert no_bank_anywhere(tmp_path)


def test_unwritable_output(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "out"
    code, lines = run_cli(tiny_data.extract_args(out), capsys)
    assert_one_line_error(code, lines, str(out))
    assert no_bank_anywhere(tmp_path)


def test_leftovers_need_resume_or_overwrite(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(tiny_data.extract_args(out), capsys)[0] == 0
    code, lines = run_cli(tiny_data.extract_args(out), capsys)
    assert_one_line_error(code, lines, str(out), "--resume", "--overwrite")


@pytest.mark.parametrize("problem", ["missing", "wrong shapes"])
def test_refused_checkpoint_leaves_nothing_to_resume(tiny_data, tmp_path, capsys, problem):
    bad = tmp_path / "bad.pth"
    if problem == "wrong shapes":
        state = torch.load(tiny_data.checkpoint, weights_only=True)
        state["state_dict"]["backbone.conv1.conv.weight"] = torch.zeros(64, 3, 1, 3, 3)
        torch.save(state, bad)
    out = tmp_path / "out"
    code, lines = run_cli(tiny_data.extract_args(out) + ["--checkpoint", str(bad)], capsys)
    assert_one_line_error(code, lines, str(bad))
    assert not out.exists() or not any(out.rglob("*"))  # no attempt record, no segment
    code, lines = run_cli(tiny_data.extract_args(out), capsys)  # fixed: no --resume needed
    assert code == 0, lines
    assert (out / "lfb_train.h5").is_file()


@pytest.mark.parametrize("case", ["empty annotations", "no proposals for any key", "every key excluded"])
def test_no_keyframes_is_one_line_and_leaves_out_empty(tiny_data, copy_of, tmp_path, capsys, case):
    """Nothing to extract (issue 20.9): one line saying why, and OUT untouched (no attempt record, no
    lock, no parts), so the corrected rerun needs no --resume."""
    annotations, proposals = copy_of / "annotations.csv", copy_of / "proposals.csv"
    changes = {"proposals": str(proposals)}
    if case == "empty annotations":
        annotations.write_text("")
        needles = [str(annotations), "no keyframes to extract", "no keys"]
    elif case == "no proposals for any key":
        proposals.write_text("other_video,0902,0.1,0.1,0.5,0.5,0.99\n")
        needles = [str(annotations), "no keyframes to extract", "no proposals", "--whole-frame-fallback"]
    else:
        keys = sorted({tuple(line.split(",")[:2]) for line in annotations.read_text().splitlines() if line})
        (copy_of / "all_excluded.csv").write_text("".join(f"{v},{t}\n" for v, t in keys))
        changes["excluded"] = str(copy_of / "all_excluded.csv")
        needles = [str(annotations), "no keyframes to extract", "excluded"]
    out = tmp_path / "out"
    out.mkdir()
    code, lines = run_cli(args_for(tiny_data, copy_of, out, **changes), capsys)
    assert code == 2
    assert_one_line_error(code, lines, *needles)
    assert not any(out.iterdir()), list(out.rglob("*"))  # no lock, no attempt record, no segment
