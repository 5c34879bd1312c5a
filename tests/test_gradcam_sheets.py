"""Grad-CAM sheets: which views --gradcam-clips draws, and the sheet's pixels (tiles of each chosen view,
header with name, top-1 label and score, per-view captions with clip times, the colour bar)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw

from lfbtool.cli import main
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.recognize.gradcam import compute_gradcam
from lfbtool.recognize.gradcam_render import HEADER_LINES, LINE, sheet_layout
from lfbtool.recognize.scoring import RecognizeOptions, open_input, resolve_settings, video_views
from lfbtool.testing.synthetic import synthetic_frames, write_video

NAMES = ["walk", "run", "jump"]
# 2 clips x 3 crops (ThreeCrop spans the short side, 32) = 6 views of 4 frames, crop-major
OPTIONS = ["--num-clips", "2", "--clip-len", "4", "--frame-interval", "1", "--short-side", "32", "--crops", "three",
           "--device", "cpu"]


def run_main(monkeypatch, capsys, *args: str | Path) -> subprocess.CompletedProcess:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["lfbtool", *map(str, args)])
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, int(stopped.value.code or 0), out, err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sheets")
    video = write_video(root / "walk.mp4", synthetic_frames(10, 32, 48, seed=5), fps=8, lossless=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.video.r3d_18(num_classes=3).state_dict(), root / "r3d.pth")
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
    recognizer = build_recognizer("r3d_18", checkpoint=str(root / "r3d.pth")).recognizer.eval()
    settings = resolve_settings(recognizer, RecognizeOptions(num_clips=2, clip_len=4, frame_interval=1, short_side=32,
                                                             crops="three"))
    views, plan = video_views(open_input(video, settings), settings)  # [6, 3, 4, 32, 32]
    return {"root": root, "video": video, "recognizer": recognizer, "views": views, "plan": plan}


def run_gradcam(data, monkeypatch, capsys, out: Path, *extra: str) -> dict:
    done = run_main(monkeypatch, capsys, "recognize", data["video"], "--backbone", "r3d_18", "--checkpoint",
                    data["root"] / "r3d.pth", *OPTIONS, "--labels", data["root"] / "labels.txt",
                    "--gradcam", out, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def blend(view: torch.Tensor, heat: np.ndarray) -> np.ndarray:
    """0.5 * frame + 0.5 * jet(heat), written out: [T, H, W, 3] uint8."""
    v = np.clip(heat, 0, 1)[..., None]
    jet = np.concatenate([np.clip(np.minimum(4 * v - a, -4 * v + b), 0, 1)
                          for a, b in ((1.5, 4.5), (0.5, 3.5), (-0.5, 2.5))], axis=-1)
    frames = view.permute(1, 2, 3, 0).numpy().astype(np.float32)
    return np.clip(np.round(0.5 * frames + 0.5 * np.round(jet * 255)), 0, 255).astype(np.uint8)


def text_strip(width: int, lines: list[str]) -> np.ndarray:
    """What PIL draws for ``lines`` at the sheet's text positions, on black."""
    image = Image.new("RGB", (width, len(lines) * LINE), "black")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((2, i * LINE), line, fill="white")
    return np.asarray(image)


def test_all_views_are_drawn_tile_by_tile_with_header_captions_and_colour_bar(data, monkeypatch, capsys, tmp_path):
    record = run_gradcam(data, monkeypatch, capsys, tmp_path / "cam", "--gradcam-clips", "all")
    heat = np.load(tmp_path / "cam" / "walk.mp4.gradcam.npy")
    assert record["gradcam"]["views"] == list(range(6)) and heat.shape == (6, 4, 32, 32)
    sheet = np.asarray(Image.open(tmp_path / "cam" / "walk.mp4.gradcam.png").convert("RGB"))
    layout = sheet_layout([4] * 6, 32, 32)
    assert sheet.shape == (layout.height, layout.width, 3) and len(layout.tiles) == 6
    target = record["top_k"][0]["index"]
    for view, tiles in enumerate(layout.tiles):
        cam = compute_gradcam(data["recognizer"], data["views"][view], target_class=target)
        np.testing.assert_allclose(heat[view], cam.map.numpy(), rtol=1e-5, atol=1e-6)
        expected = blend(data["views"][view], heat[view])
        for frame, (x, y) in zip(expected, tiles, strict=True):
            assert np.array_equal(sheet[y:y + 32, x:x + 32], frame)
    # header: the input's name, its top-1 label and score, the explained class and layer
    top = record["top_k"][0]
    header = ["walk.mp4", f"top-1: {top['label']} ({top['score']:.3f}, average score)",
              f"map of {top['label']} at model.layer4, 6 view(s)"]
    assert np.array_equal(sheet[:HEADER_LINES * LINE], text_strip(layout.width, header))
    # view 4 = crop 2 of clip 0: its frames' times at 8 frames/s (the plan's frame numbers are 1-based) and
    # its own logit for the class
    numbers = data["plan"].numbers[0]
    times = f"{(numbers.min() - 1) / 8:.2f}-{numbers.max() / 8:.2f} s"
    with torch.no_grad():
        logit = float(data["recognizer"](data["views"][4:5].float())[0, target])
    y = layout.captions[4]
    caption = f"view 4 (clip 0, crop 2), {times}, score {logit:.3f}"
    assert np.array_equal(sheet[y:y + LINE], text_strip(layout.width, [caption]))
    # the colour bar: jet from 0 (dark blue) at its left to 1 (dark red) at its right, the same on every row
    x0, y0, x1, y1 = layout.bar
    bar = sheet[y0:y1, x0:x1].astype(int)
    assert (bar == bar[:1]).all() and x1 - x0 == layout.width - 8
    assert bar[0, 0].tolist() == [0, 0, 128] and bar[0, -1].tolist() == [128, 0, 0]
    middle = bar[0, (x1 - x0) // 2]
    assert middle[1] == 255 and abs(middle[0] - 128) <= 4 and abs(middle[2] - 128) <= 4
    assert (np.diff(bar[0, :, 0][bar[0, :, 1] == 255]) >= 0).all()  # red rises through the green band


def test_top_is_the_view_scoring_highest_on_the_class(data, monkeypatch, capsys, tmp_path):
    record = run_gradcam(data, monkeypatch, capsys, tmp_path / "cam", "--average-clips", "none")
    per_view = np.array(record["scores"])  # [6, 3] logits; the table ranks by their mean
    target = int(per_view.mean(axis=0).argmax())
    assert record["gradcam"]["class"] == target
    assert record["gradcam"]["views"] == [int(per_view[:, target].argmax())]
    heat = np.load(tmp_path / "cam" / "walk.mp4.gradcam.npy")
    cam = compute_gradcam(data["recognizer"], data["views"][record["gradcam"]["views"][0]], target_class=target)
    np.testing.assert_allclose(heat[0], cam.map.numpy(), rtol=1e-5, atol=1e-6)
    sheet = Image.open(tmp_path / "cam" / "walk.mp4.gradcam.png")
    assert sheet.size == (sheet_layout([4], 32, 32).width, sheet_layout([4], 32, 32).height)  # one view's tiles


def test_a_list_of_views_in_the_order_given(data, monkeypatch, capsys, tmp_path):
    record = run_gradcam(data, monkeypatch, capsys, tmp_path / "cam", "--gradcam-clips", "5,1", "--gradcam-class", "2")
    assert record["gradcam"]["views"] == [5, 1] and record["gradcam"]["class"] == 2
    heat = np.load(tmp_path / "cam" / "walk.mp4.gradcam.npy")
    sheet = np.asarray(Image.open(tmp_path / "cam" / "walk.mp4.gradcam.png").convert("RGB"))
    layout = sheet_layout([4, 4], 32, 32)
    assert sheet.shape[:2] == (layout.height, layout.width)
    for panel, view in enumerate((5, 1)):
        x, y = layout.tiles[panel][0]
        assert np.array_equal(sheet[y:y + 32, x:x + 32], blend(data["views"][view], heat[panel])[0])
    gif = Image.open(tmp_path / "cam" / "walk.mp4.gradcam.gif")
    assert gif.n_frames == 4 and gif.size == (32, 32)  # the first chosen view


@pytest.mark.parametrize(("value", "needle"), [
    ("6", "--gradcam-clips '6': no view 6; views are 0..5 (2 clips x 3 crops, crop-major)"),
    ("first", "give top, all or view indices like 0,3"),
    ("1,1", "a view is named twice"),
])
def test_bad_gradcam_clips_is_one_line_before_any_work(data, monkeypatch, capsys, tmp_path, value, needle):
    out = tmp_path / "results.jsonl"
    done = run_main(monkeypatch, capsys, "recognize", data["video"], "--backbone", "r3d_18", "--checkpoint",
                    data["root"] / "r3d.pth", *OPTIONS, "--gradcam", tmp_path / "cam", "--gradcam-clips", value,
                    "--out", out)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: {needle}"] or (
        len(done.stderr.splitlines()) == 1 and needle in done.stderr), done.stderr
    assert not out.exists() and not (tmp_path / "cam").exists() and not list(tmp_path.glob("*.parts"))
