"""``lfbtool show`` and ``detect --preview`` from the command line: one line for bad input, no torch for
a strips-only picture, previews of a fresh and of an already complete detect run that show the boxes
of the written file on the keyframe images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_light_start import lfbtool_light
from tests.test_pictures import FPS, SECONDS, C, index_colour, write_bank, write_index_frames


def run_main(args: list[str | Path], monkeypatch, capsys) -> tuple[int, str, list[str]]:
    """The console script in this process: exit code, stdout, stderr's lines."""
    from lfbtool.cli import main

    monkeypatch.setattr(sys, "argv", ["lfbtool", *map(str, args)])
    monkeypatch.delenv("LFBTOOL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main()
    captured = capsys.readouterr()
    return int(stopped.value.code or 0), captured.out, captured.err.strip().splitlines()


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("show_cli")
    rng = np.random.default_rng(2)
    path = root / "bank.h5"
    write_bank(path, {("v", t): rng.random((1 + t % 2, C)) for t in range(1, 6)},
               {"fps": FPS, "timestamp_start": 0, "start_index": 1, "frame_template": "img_{:05d}.png"})
    return path


def test_strips_alone_start_without_torch(bank, tmp_path):
    out = tmp_path / "strips.png"
    done, loaded = lfbtool_light("show", bank, "-o", out)
    assert done.returncode == 0, done.stderr
    assert loaded == []
    assert "1 video, 0 keyframe tiles" in done.stdout and Image.open(out).size[0] > 200


@pytest.mark.parametrize("case", ["video", "frames", "output", "directory", "imported"])
def test_bad_input_is_one_line(bank, tmp_path, monkeypatch, capsys, case):
    frames = tmp_path / "frames"
    frames.mkdir()
    (tmp_path / "a_file").write_text("x")
    args: list[str | Path] = ["show", bank, "-o", tmp_path / "out.png"]
    expected = {
        "video": "video 'nope' is not in bank",
        "frames": f"unknown video id v: no frame directory {frames / 'v'}",
        "output": f"{tmp_path / 'a_file' / 'out.png'}: cannot write the picture: {tmp_path / 'a_file'} is not a directory",
        "directory": f"{tmp_path / 'missing'}: cannot create the picture directory",
        "imported": "records no fps or timestamp_start (imported from MMAction2?); give --fps and --timestamp-start",
    }[case]
    if case == "video":
        args += ["--video", "v", "--video", "nope"]
    elif case == "frames":
        args += ["--frames-root", frames]
    elif case == "output":
        args[3] = tmp_path / "a_file" / "out.png"
    elif case == "directory":  # detect --preview into a path under a file: refused before detecting
        (tmp_path / "missing").write_text("a file where the directory should be")
        args = ["detect", "--out", tmp_path / "boxes.pkl", "--frames-root", frames, "--fps", "4",
                "--preview", tmp_path / "missing"]
    else:
        imported = tmp_path / "imported.h5"
        write_bank(imported, {("v", 1): np.ones((1, C))}, {"source": "mmaction2-pkl", "imported_from": "x.pkl"})
        args = ["show", imported, "-o", tmp_path / "out.png", "--frames-root", frames]
    code, _, lines = run_main(args, monkeypatch, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "boxes.pkl").exists()


def test_imported_bank_draws_frames_with_the_rate_given(bank, tmp_path, monkeypatch, capsys):
    write_index_frames(tmp_path / "frames" / "v", FPS * SECONDS)
    imported = tmp_path / "imported.h5"
    nan = float("nan")  # an imported bank's boxes are unknown: nothing to draw, no error
    write_bank(imported, {("v", 902): np.ones((1, C))}, {"source": "mmaction2-pkl"}, boxes=(nan, nan, nan, nan))
    out = tmp_path / "out.png"
    code, stdout, lines = run_main(["show", imported, "-o", out, "--frames-root", tmp_path / "frames",
                                    "--fps", "4", "--timestamp-start", "900", "--frame-template", "img_{:05d}.png"],
                                   monkeypatch, capsys)
    assert code == 0, lines
    assert f"wrote {out}" in stdout and "1 keyframe tiles" in stdout
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert np.all(pixels == index_colour(4 * 2 + 2), axis=-1).sum() == 256 * 341  # frame 10 fills the tile


def test_detect_preview_fresh_and_complete(tmp_path):
    """Boxes read back from the written proposals lie on the tiles at their coordinates, each tile shows
    its key's keyframe (frame 4t + 2), and a rerun that finds the output complete draws the same sheet."""
    from lfbtool.data.ava import read_proposals
    from lfbtool.detect.run import clip_settings, detect_config, resolve_defaults, run_detect
    from lfbtool.pictures import write_previews
    from lfbtool.pictures.draw import PALETTE
    from lfbtool.testing.checkpoints import make_random_person_detector

    write_index_frames(tmp_path / "frames" / "v", FPS * 6, height=48, width=64)
    detector = "fasterrcnn_mobilenet_v3_large_320_fpn"
    checkpoint = make_random_person_detector(tmp_path / "detector.pth", name=detector)
    out = tmp_path / "boxes.pkl"
    options = dict(out=out, frames_root=tmp_path / "frames", fps=FPS, frame_template="img_{:05d}.png",
                   detector=detector, detector_checkpoint=checkpoint, detector_min_size=64, detector_max_size=64, max_per_frame=2,
                   clip_len=4, frame_interval=2, device="cpu", preview_frames=3)
    result = run_detect(detect_config(**options, preview=tmp_path / "fresh"), show_progress=False)
    assert result.keys == [("v", t) for t in range(1, 6)] and result.detected_now == 5
    found = read_proposals(out)
    fresh = Image.open(tmp_path / "fresh" / "v.png").convert("RGB")

    # the same call as the hook, to learn where the tiles lie
    settings = clip_settings(resolve_defaults(detect_config(**options)))
    (picture,) = write_previews(out, result.keys, settings, tmp_path / "again", 3)
    assert np.array_equal(np.asarray(picture.image), np.asarray(fresh))
    assert [t.key for t in picture.tiles] == [("v", 1), ("v", 3), ("v", 5)]  # 3 evenly spread of 5
    pixels = np.asarray(fresh)
    for tile in picture.tiles:
        x, y, w, h = tile.box
        assert tile.frame_number == 4 * tile.key[1] + 2 and (w, h) == (341, 256)
        image = pixels[y:y + h, x:x + w].reshape(-1, 3)
        colours, counts = np.unique(image, axis=0, return_counts=True)
        assert tuple(colours[counts.argmax()]) == index_colour(tile.frame_number)  # mostly the keyframe
        boxes = found[tile.key]
        last = len(boxes) - 1  # drawn last: nothing covers its left and bottom edges but its own label
        x1, y1, x2, y2 = boxes[last, :4]
        left, top, bottom = round(x1 * w), round(y1 * h), round(y2 * h) - 1
        assert tuple(pixels[y + (top + bottom) // 2, x + left]) == PALETTE[last]
        assert tuple(pixels[y + bottom, x + (left + round(x2 * w) - 1) // 2]) == PALETTE[last]

    again = run_detect(detect_config(**options, resume=True, preview=tmp_path / "complete"), show_progress=False)
    assert again.already_complete and again.detected_now == 0
    complete = Image.open(tmp_path / "complete" / "v.png").convert("RGB")
    assert np.array_equal(np.asarray(complete), pixels)
    assert json.loads(Path(f"{out}.json").read_text())["keyframes"] == 5
