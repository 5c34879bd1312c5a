"""The progress bar: on stderr when asked for (a terminal), absent otherwise; the summary's counts."""

from __future__ import annotations

from lfbtool.extract.config import build_config
from lfbtool.extract.run import run_extract


def config_for(tiny_data, out):
    ex = tiny_data.example
    return build_config(None, {
        "out": out, "annotations": ex.annotations_csv, "excluded": ex.excluded_csv,
        "proposals": ex.proposals_pkl, "frames_root": ex.frames_root, "checkpoint": tiny_data.checkpoint,
        "fps": ex.fps, "timestamp_start": ex.timestamp_start, "clip_len": 4, "frame_interval": 2,
        "short_side": 32, "num_workers": 0,
    })


def test_progress_bar_on_request_and_silent_otherwise(tiny_data, tmp_path, capsys):
    shown = run_extract(config_for(tiny_data, tmp_path / "a"), show_progress=True)
    err = capsys.readouterr().err
    total = shown.keyframes
    assert "keyframes" in err and f"{total}/{total}" in err and "keyframes/s" in err

    quiet = run_extract(config_for(tiny_data, tmp_path / "b"))  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    assert (quiet.keyframes, quiet.extracted_now, quiet.resumed) == (total, total, 0)
    assert quiet.boxes == shown.boxes and quiet.output == tmp_path / "b" / "lfb_train.h5"
    assert [s.reason for s in quiet.skipped] == ["no proposals"]
