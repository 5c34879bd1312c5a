"""Output paths and options that cannot work (issue 20, point 8): a dangling symbolic link, a file where
a directory goes and the reverse, ``--num-workers -1``, frame rates out of range. Each is one line
and exit 2 before any work, and nothing is written: no attempt record, no lock, no temporary, and the
link still points nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfbtool.bank.writer import BankWriter
from tests.conftest import run_in_process
from tests.test_faults import one_error_line


def small_bank(path: Path) -> Path:
    import numpy as np

    with BankWriter(path, feature_dim=4, dtype="float32", mode="train") as writer:
        writer.append("v", 902, np.ones((1, 4), np.float32), np.float32([[0.1, 0.1, 0.5, 0.5]]), np.float32([0.9]))
    return path


def everything_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def paths(tmp_path) -> dict[str, Path]:
    """A bank, its MMAction2 export, and the hostile outputs: links to nothing, a file, a directory."""
    from lfbtool.bank.export import export_mmaction_pkl

    bank = small_bank(tmp_path / "lfb_train.h5")
    export_mmaction_pkl(bank, tmp_path / "lfb_train.pkl")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dangling.h5").symlink_to(tmp_path / "nowhere" / "x.h5")
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "a_dir").mkdir()
    return {"root": tmp_path, "bank": bank, "pkl": tmp_path / "lfb_train.pkl"}


FILE_COMMANDS = {
    "merge": lambda p, out: ["merge", str(p["bank"]), str(p["bank"]), "-o", str(out)],
    "export mmaction-pkl": lambda p, out: ["export", str(p["bank"]), "--format", "mmaction-pkl", "-o", str(out)],
    "import": lambda p, out: ["import", str(p["pkl"]), "-o", str(out)],
}


@pytest.mark.parametrize("command", FILE_COMMANDS)
@pytest.mark.parametrize(("target", "needle"), [("dangling.h5", "is a symbolic link to"),
                                                ("a_dir", "is a directory; give the output a file name")])
@pytest.mark.parametrize("force", [False, True])
def test_file_outputs(command, target, needle, force, paths, capsys) -> None:
    root = paths["root"]
    before = everything_in(root)
    args = FILE_COMMANDS[command](paths, root / target) + (["--force"] if force else [])
    one_error_line(run_in_process(args, capsys), 2, str(root / target), needle)
    assert everything_in(root) == before  # nothing written, the link still points nowhere
    assert (root / "dangling.h5").is_symlink() and not (root / "dangling.h5").exists()


@pytest.mark.parametrize(("target", "needle"), [("dangling", "which does not exist; create that directory"),
                                                ("a_file", "exists and is not a directory")])
def test_directory_outputs(target, needle, paths, tiny_data, capsys) -> None:
    root = paths["root"]
    before = everything_in(root)
    npz = ["export", str(paths["bank"]), "--format", "npz-dir", "-o", str(root / target), "--force"]
    one_error_line(run_in_process(npz, capsys), 2, str(root / target), needle)
    extract = tiny_data.extract_args(root / target)
    one_error_line(run_in_process(extract, capsys), 2, str(root / target), needle)
    assert everything_in(root) == before


def test_detect_output_link_to_nothing(paths, tiny_data, capsys) -> None:
    root = paths["root"]
    (root / "persons.pkl").symlink_to(root / "nowhere" / "persons.pkl")
    before = everything_in(root)
    args = ["detect", "--videos-root", str(tiny_data.example.videos_root), "--out", str(root / "persons.pkl"),
            "--detector-checkpoint", str(root / "not_loaded_before_the_check.pth")]
    one_error_line(run_in_process(args, capsys), 2, str(root / "persons.pkl"), "is a symbolic link to")
    assert everything_in(root) == before


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--num-workers", "-1", "--num-workers must be 0"),
    ("--fps", "1e400", "out of range"),
    ("--fps", "1/1e400", "not a frame rate"),
    ("--fps", "0.0000001", "out of range"),
    ("--fps", "nan", "not a frame rate"),
    ("--fps", "inf", "not a frame rate"),
    ("--fps", "0", "fps must be positive"),
    ("--fps", "-29.97", "fps must be positive"),
])
def test_bad_option_values_write_nothing(option, value, needle, tiny_data, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args = tiny_data.extract_args(out)
    args[args.index(option) + 1] = value
    one_error_line(run_in_process(args, capsys), 2, value, needle)
    assert not any(out.iterdir())  # no attempt record: the corrected rerun needs no --resume
