"""What ``--help`` and a mistyped command line show: ``--version``, an example under every command,
the choices of every enum option, no ``<bool>`` beside a flag, and one ``error:`` line with "did you
mean" for a misspelled choice, backbone or detector (rendered in this process)."""

from __future__ import annotations

from enum import Enum
from importlib.metadata import version

import pytest

from tests.conftest import run_in_process

COMMANDS = ("extract", "merge", "verify", "inspect", "export", "import", "diff", "recognize", "detect",
            "backbones", "show")


@pytest.fixture
def wide(monkeypatch):
    """Help rendered 250 columns wide: a choice list is never folded across lines."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")


def enum_options(command: str) -> dict[str, list[str]]:
    """Each option of ``command`` declared with an Enum type, and its values (read off the signature)."""
    import typing

    import lfbtool.cli as cli

    function = next(info.callback for info in cli.app.registered_commands if info.name == command)
    found = {}
    for name, hint in typing.get_type_hints(function, include_extras=True).items():
        base, *extras = typing.get_args(hint) or (hint,)
        members = [arg for arg in (typing.get_args(base) or (base,)) if isinstance(arg, type) and issubclass(arg, Enum)]
        if members and extras:
            option = next((n for n in extras[0].param_decls if n.startswith("--")), f"--{name.replace('_', '-')}")
            found[option] = [m.value for m in members[0]]
    return found


def test_version_is_the_package_metadata(capsys):
    done = run_in_process(["--version"], capsys)
    assert done.returncode == 0 and done.stdout == f"lfbtool {version('lfbtool')}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_every_choice_and_no_bool(command, capsys, wide):
    done = run_in_process([command, "--help"], capsys)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Example" in text and f"lfbtool {command}" in text.split("Example", 1)[1]
    assert "<bool>" not in text
    for option, values in enum_options(command).items():
        line = next(line for line in text.splitlines() if f" {option} " in line)
        assert f"<{'|'.join(values)}>" in line, (option, line)


def test_examples_fit_80_columns():
    from lfbtool.cli.help import EXAMPLE_WIDTH, EXAMPLES

    long = [line for text in EXAMPLES.values() for line in text.splitlines() if len(line) > EXAMPLE_WIDTH]
    assert not long, long
    assert set(EXAMPLES) == {"", *COMMANDS}


def test_enum_options_are_declared_as_enums():
    # the options that take a fixed set of names list them; a plain str would show <str>
    assert enum_options("recognize").keys() >= {"--crops", "--average-clips", "--precision"}
    assert enum_options("detect").keys() >= {"--keyframes"}
    assert enum_options("extract").keys() >= {"--keyframes", "--precision", "--temporal-pool", "--spatial-pool",
                                               "--roi-temporal-pool"}
    assert enum_options("recognize")["--crops"] == ["center", "three", "ten"]


def test_root_help_has_no_bool_and_lists_version(capsys, wide):
    done = run_in_process(["--help"], capsys)
    assert done.returncode == 0 and "--version" in done.stdout and "<bool>" not in done.stdout
    assert "Example" in done.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["extract", "--precision", "bf61"], "--precision: 'bf61' is not one of fp32, bf16, fp16, auto; did you mean bf16?"),
    (["recognize", "x.mp4", "--backbone", "r3d_18", "--crops", "tree"], "did you mean three?"),
    (["recognize", "x.mp4", "--backbone", "r3d_18", "--average-clips=porb"], "did you mean prob?"),
    (["export", "b.h5", "-o", "x", "--format", "npz"], "did you mean npz-dir?"),
    (["extract", "--precisio", "bf16"], "no such option --precisio; did you mean --precision?"),
    (["extrac"], "Did you mean 'extract'?"),
])
def test_a_mistyped_command_line_is_one_line_with_a_suggestion(args, expected, capsys):
    done = run_in_process(args, capsys)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr


def test_a_misspelled_backbone_or_detector_suggests_the_right_one(tmp_path, capsys):
    done = run_in_process(["extract", "--frames-root", str(tmp_path), "--backbone", "slowonly_r5"], capsys)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown backbone 'slowonly_r5'; did you mean slowonly_r50?" in lines[0]
    from lfbtool.errors import LfbError
    from lfbtool.models.detector import build_detector

    with pytest.raises(LfbError, match="unknown detector 'fasterrcnn_resnet50_fpn_v3'; did you mean "
                                       "fasterrcnn_resnet50_fpn_v2?"):
        build_detector("fasterrcnn_resnet50_fpn_v3")


def test_a_misspelled_choice_in_a_config_file_suggests_too():
    from lfbtool.choices import Pool
    from lfbtool.errors import LfbError

    with pytest.raises(LfbError, match=r"my.toml: temporal_pool must be one of avg, max, got 'mx'; did you mean max\?"):
        Pool.parse("mx", "my.toml: temporal_pool")
    with pytest.raises(LfbError) as refused:
        Pool.parse("zzz", "--spatial-pool")
    assert "did you mean" not in str(refused.value)  # nothing close: no guess
