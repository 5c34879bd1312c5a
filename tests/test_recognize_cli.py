"""The recognize loop and CLI: scores against a reference built by hand, inputs, chunking, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from typer.testing import CliRunner

from lfbtool.cli import app
from lfbtool.data.preprocess import resize_clip
from lfbtool.errors import LfbError
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.recognize.scoring import RecognizeOptions, load_labels, recognize, resolve_settings
from lfbtool.testing.checkpoints import random_recognizer_state
from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir, write_video
from tests.reference import KINETICS_SPATIAL_STRIDE, slowonly_r50_reference

ROOT = Path(__file__).resolve().parents[1]
PNG = "img_{:05d}.png"
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
# 20 frames, clip 4 x 2, 3 clips: span 7, max_offset 13, offsets round(0, 6.5, 13) = 0, 6, 13.
NUMBERS = [[1, 3, 5, 7], [7, 9, 11, 13], [14, 16, 18, 20]]
# 40 x 56 frames, short side 32: 32 x int(44.8 + 0.5) = 32 x 45; ThreeCrop 32: w_step 6 -> x 0, 12, 6.
THREE_X = [0, 12, 6]
OPTIONS = [
    "--num-clips",
    "3",
    "--clip-len",
    "4",
    "--frame-interval",
    "2",
    "--short-side",
    "32",
    "--crops",
    "three",
    "--frame-template",
    PNG,
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recognize")
    frames = synthetic_frames(20, 40, 56, seed=3)
    write_frame_dir(root / "clip", frames, template=PNG)
    write_video(root / "clip.mp4", frames, fps=10, lossless=True)
    write_video(root / "short.mp4", frames[:5], fps=10, lossless=True)
    state = random_recognizer_state("slowonly_r50", num_classes=4, seed=0)
    torch.save({"meta": {}, "state_dict": state}, root / "slowonly.pth")
    (root / "labels.txt").write_text("walk\nrun\njump\nsit\n")
    return {"root": root, "frames": frames, "state": state}


def settings_for(recognizer, **overrides):
    base = dict(num_clips=3, clip_len=4, frame_interval=2, short_side=32, crops="three", template=PNG)
    return resolve_settings(recognizer, RecognizeOptions(**{**base, **overrides}))


def reference_logits(frames: np.ndarray, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-view logits [crops x clips, C], crop-major, from hand-set frame numbers and crop offsets.

    Resizing uses lfbtool's cv2-exact ``resize_clip`` (checked against cv2 in its own tests); the
    frame numbers, crops, view order, normalization and network are independent of lfbtool.
    """
    views = []
    for x in THREE_X:
        for numbers in NUMBERS:
            clip = resize_clip(torch.from_numpy(frames[np.array(numbers) - 1]), (32, 45))  # [3, T, 32, 45]
            views.append(clip[..., x : x + 32])
    x = (torch.stack(views).float() - MEAN) / STD
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    with torch.no_grad():
        feats = slowonly_r50_reference(backbone, x, KINETICS_SPATIAL_STRIDE).mean(dim=(2, 3, 4))
    return feats @ state["cls_head.fc_cls.weight"].T + state["cls_head.fc_cls.bias"]


def test_scores_match_the_reference_for_score_prob_none(data):
    built = build_recognizer("slowonly_r50", checkpoint=str(data["root"] / "slowonly.pth"))
    logits = reference_logits(data["frames"], data["state"]).double()
    expected = {"score": logits.mean(0), "prob": logits.softmax(1).mean(0), "none": logits}
    for mode, reference in expected.items():
        settings = settings_for(built.recognizer, average_clips=mode)
        (result,) = recognize([data["root"] / "clip.mp4"], built.recognizer, settings)
        assert result.num_views == 9 and result.num_frames == 20 and not result.looped
        torch.testing.assert_close(result.scores.double(), reference, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(expected["score"].softmax(0), expected["prob"])  # the modes differ here


def test_video_file_and_frame_directory_agree(data):
    recognizer = build_recognizer("slowonly_r50", checkpoint=str(data["root"] / "slowonly.pth")).recognizer
    settings = settings_for(recognizer, average_clips="none")
    video, directory = recognize([data["root"] / "clip.mp4", data["root"] / "clip"], recognizer, settings)
    assert torch.equal(video.scores, directory.scores)


def test_max_testing_views_and_batching_give_the_same_scores(data):
    recognizer = build_recognizer("slowonly_r50", checkpoint=str(data["root"] / "slowonly.pth")).recognizer
    inputs = [data["root"] / "clip.mp4", data["root"] / "clip"]
    full = [r.scores for r in recognize(inputs, recognizer, settings_for(recognizer, average_clips="none"))]
    for chunk, batch in ((1, 1), (3, 1), (9, 1), (3, 2), (None, 2)):
        settings = settings_for(recognizer, average_clips="none", max_testing_views=chunk, batch_videos=batch)
        got = [r.scores for r in recognize(inputs, recognizer, settings)]
        for a, b in zip(got, full, strict=True):
            # CPU kernels block differently per batch size: equal to float32 rounding (see test_recognizer).
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
            if chunk in (9, None) and batch == 1:
                assert torch.equal(a, b)


def test_short_video_loops_and_says_so(data):
    recognizer = build_recognizer("slowonly_r50", checkpoint=str(data["root"] / "slowonly.pth")).recognizer
    notices: list[str] = []
    settings = settings_for(recognizer, num_clips=1)
    (result,) = recognize([data["root"] / "short.mp4"], recognizer, settings, on_notice=notices.append)
    assert result.looped and result.num_frames == 5 and torch.isfinite(result.scores).all()
    assert len(notices) == 1 and "short.mp4" in notices[0] and "loop" in notices[0]


def test_tsn_2d_path_with_a_torchvision_image_model(tmp_path, data):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    recognizer = build_recognizer(
        "torchvision.resnet18", checkpoint=str(tmp_path / "resnet18.pth")
    ).recognizer
    settings = resolve_settings(
        recognizer, RecognizeOptions(num_clips=4, short_side=32, crop_size=32, template=PNG)
    )
    (result,) = recognize([data["root"] / "clip"], recognizer, settings)
    # 20 frames, 4 segments of 5: middles 2.5, 7.5, 12.5, 17.5 -> 2, 7, 12, 17 -> files 3, 8, 13, 18.
    frames = resize_clip(torch.from_numpy(data["frames"][[2, 7, 12, 17]]), (32, 45)).transpose(0, 1)
    crops = frames[..., 6:38].float() / 255  # centre crop: x (45 - 32) // 2 = 6
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((crops - mean) / std).mean(0)
    assert result.num_views == 4
    torch.testing.assert_close(result.scores, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(LfbError, match="--clip-len must be 1"):
        resolve_settings(recognizer, RecognizeOptions(clip_len=4))


def test_labels_file_must_match_the_class_count(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n\n")  # a trailing blank line does not count
    assert load_labels(str(path), 3) == ["a", "b", "c"]
    with pytest.raises(LfbError, match=r"labels.txt: 3 labels but the model has 4 classes"):
        load_labels(str(path), 4)
    names = load_labels("kinetics400", 400)
    assert names is not None and len(names) == 400 and names[0] == "abseiling"
    assert load_labels(None, 2, ["x", "y"]) == ["x", "y"] and load_labels(None, 2) is None


def test_unreadable_video_is_a_clear_error(tmp_path, data):
    recognizer = build_recognizer("slowonly_r50", checkpoint=str(data["root"] / "slowonly.pth")).recognizer
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(LfbError, match="broken.mp4"):
        list(recognize([broken], recognizer, settings_for(recognizer)))
    with pytest.raises(LfbError, match="missing.mp4: no such video file or frame directory"):
        list(recognize([tmp_path / "missing.mp4"], recognizer, settings_for(recognizer)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LfbError, match="empty: no frames"):
        list(recognize([tmp_path / "empty"], recognizer, settings_for(recognizer)))


def test_cli_json_out_and_list_input(tmp_path, data):
    root = data["root"]
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# two views of the same frames\n{root / 'clip.mp4'}\n\n{root / 'clip'}\n")
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "recognize",
            f"@{listing}",
            "--backbone",
            "slowonly_r50",
            "--checkpoint",
            str(root / "slowonly.pth"),
            "--labels",
            str(root / "labels.txt"),
            "--json",
            "--out",
            str(out),
            "--top-k",
            "2",
            *OPTIONS,
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["input"] for r in lines] == [str(root / "clip.mp4"), str(root / "clip")]
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    logits = reference_logits(data["frames"], data["state"]).mean(0)
    record = lines[0]
    assert record["views"] == 9 and record["average_clips"] == "score" and len(record["scores"]) == 4
    np.testing.assert_allclose(record["scores"], logits.numpy(), rtol=1e-4, atol=1e-5)
    best = int(logits.argmax())
    assert record["top_k"][0] == {
        "rank": 1,
        "index": best,
        "label": ["walk", "run", "jump", "sit"][best],
        "score": record["scores"][best],
    }
    assert len(record["top_k"]) == 2


def test_cli_table_and_per_view_scores(data):
    root = data["root"]
    args = [
        "recognize",
        str(root / "clip"),
        "--backbone",
        "slowonly_r50",
        "--checkpoint",
        str(root / "slowonly.pth"),
        "--labels",
        str(root / "labels.txt"),
        *OPTIONS,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "9 views" in result.stdout and "rank" in result.stdout
    assert sum(name in result.stdout for name in ("walk", "run", "jump", "sit")) == 4
    result = CliRunner().invoke(app, [*args, "--average-clips", "none", "--json"])
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.array(record["scores"]).shape == (9, 4)


def test_cli_errors(tmp_path, data):
    root = data["root"]
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "recognize",
            str(root / "clip"),
            "--backbone",
            "resnet9000",
            "--checkpoint",
            str(root / "slowonly.pth"),
        ],
    )
    assert isinstance(result.exception, LfbError) and "unknown backbone 'resnet9000'" in str(result.exception)
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    result = runner.invoke(
        app,
        [
            "recognize",
            str(root / "clip"),
            "--backbone",
            "slowonly_r50",
            "--checkpoint",
            str(root / "slowonly.pth"),
            "--labels",
            str(tmp_path / "five.txt"),
            *OPTIONS,
        ],
    )
    assert isinstance(result.exception, LfbError) and "5 labels but the model has 4 classes" in str(
        result.exception
    )
    result = runner.invoke(app, ["recognize", str(root / "clip"), "--backbone", "slowonly_r50"])
    assert isinstance(result.exception, LfbError) and "--checkpoint" in str(result.exception)


def test_cli_error_is_one_line_and_exit_code_2_with_fail_fast(tmp_path, data, capsys):
    from tests.conftest import (
        run_in_process,  # the console script's main(): refusals need no process of their own
    )

    args = ["recognize", str(tmp_path / "missing.mp4"), "--backbone", "slowonly_r50",
            "--checkpoint", str(data["root"] / "slowonly.pth"), "--device", "cpu"]
    done = run_in_process([*args, "--fail-fast"], capsys)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'missing.mp4'}: no such video file or frame directory"]
    done = run_in_process(args, capsys)  # keep going: a failed input
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"failed: {tmp_path / 'missing.mp4'}: no such video file or frame directory" in done.stderr
    assert "0 of 1 inputs scored" in done.stderr
