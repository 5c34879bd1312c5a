"""The entry point's error handling: --debug is read from the arguments, never written to the environment."""

from __future__ import annotations

import os
import sys

import pytest

from lfbtool.cli import DEBUG_VARIABLE, debug_requested, main


def test_debug_is_an_option_before_the_command(monkeypatch) -> None:
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    assert debug_requested(["--debug", "verify", "x.h5"])
    assert not debug_requested(["verify", "--debug"])  # after the command it is the command's argument
    assert not debug_requested([])
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    assert debug_requested(["verify", "x.h5"])


def test_debug_shows_the_error_and_leaves_the_environment_alone(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    from lfbtool.errors import LfbError

    monkeypatch.setattr(sys, "argv", ["lfbtool", "--debug", "verify", str(tmp_path / "missing.h5")])
    with pytest.raises(LfbError, match="missing.h5"):
        main()
    assert DEBUG_VARIABLE not in os.environ
    monkeypatch.setattr(sys, "argv", ["lfbtool", "verify", str(tmp_path / "missing.h5")])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "missing.h5" in err
