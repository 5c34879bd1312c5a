"""Grad-CAM: equal to a plain-torch reference with hooks (3D and 2D), peaks where the class is decided,
and the pictures recognize --gradcam writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import lfbtool
from lfbtool.cli import app
from lfbtool.errors import LfbError
from lfbtool.models.normalization import Normalization
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.models.recognizers import Recognizer3D
from lfbtool.models.registry import TestDefaults as Defaults
from lfbtool.recognize.gradcam import compute_gradcam
from lfbtool.recognize.gradcam_render import sheet_layout
from lfbtool.testing.synthetic import synthetic_frames, write_video


def reference_cam(model: nn.Module, layer: nn.Module, views: torch.Tensor, cls: int, is_2d: bool) -> torch.Tensor:
    """MMAction2's recipe written out with module hooks: forward hook for activations, backward hook
    for gradients, the class logit averaged over segments as target."""
    store: dict[str, torch.Tensor] = {}
    h1 = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o.detach()))
    h2 = layer.register_full_backward_hook(lambda m, gi, go: store.__setitem__("grad", go[0].detach()))
    model.zero_grad()
    model(views)[:, cls].mean().backward()
    h1.remove()
    h2.remove()
    act, grad = store["act"], store["grad"]
    if is_2d:  # [T, C, h, w] -> [1, T, C, h, w]
        act, grad = act[None], grad[None]
        t = views.shape[0]
    else:  # [1, C, T', h, w] -> [1, T', C, h, w]
        act, grad = act.permute(0, 2, 1, 3, 4), grad.permute(0, 2, 1, 3, 4)
        t = views.shape[2]
    b, tg, c = act.shape[:3]
    weights = grad.reshape(b, tg, c, -1).mean(3).reshape(b, tg, c, 1, 1)
    cam = F.relu((weights * act).sum(2, keepdim=True)).permute(0, 2, 1, 3, 4)
    cam = F.interpolate(cam, size=(t, views.shape[-2], views.shape[-1]), mode="trilinear", align_corners=False)
    lo, hi = cam.min(), cam.max()
    return ((cam - lo) / (hi - lo + 1e-20))[0, 0]


def test_3d_map_equals_the_hook_reference():
    torch.manual_seed(0)
    recognizer = build_recognizer("r3d_18", num_classes=4).recognizer.eval()
    clip = torch.randint(0, 256, (3, 4, 32, 32), dtype=torch.uint8)
    cam = compute_gradcam(recognizer, clip, target_class=2)
    assert cam.layer == "model.layer4" and cam.map.shape == (4, 32, 32) and cam.target_class == 2
    x = recognizer.normalize(clip[None].float())
    expected = reference_cam(recognizer.model, recognizer.model.layer4, x, 2, is_2d=False)
    torch.testing.assert_close(cam.map, expected, rtol=1e-4, atol=1e-5)
    assert float(cam.map.min()) == 0.0 and float(cam.map.max()) == pytest.approx(1.0)
    default = lfbtool.gradcam(recognizer, clip)  # top-1 class by default
    top1 = int(recognizer(clip[None].float()).argmax())
    torch.testing.assert_close(default, reference_cam(recognizer.model, recognizer.model.layer4, x, top1, False),
                               rtol=1e-4, atol=1e-5)
    other = compute_gradcam(recognizer, clip, target_class=2, layer="model/layer3")  # MMAction2 style name
    assert other.layer == "model.layer3" and not torch.allclose(other.map, cam.map)
    with pytest.raises(LfbError, match="no such module"):
        compute_gradcam(recognizer, clip, layer="model.layer9")


def test_2d_map_treats_segments_as_time():
    torch.manual_seed(0)
    recognizer = build_recognizer("torchvision.resnet18", num_classes=3).recognizer.eval()
    clip = torch.randint(0, 256, (3, 5, 32, 32), dtype=torch.uint8)  # 5 single-frame segments
    cam = compute_gradcam(recognizer, clip, target_class=1)
    assert cam.map.shape == (5, 32, 32)
    frames = recognizer.normalize(clip.permute(1, 0, 2, 3).unsqueeze(2).float())[:, :, 0]
    expected = reference_cam(recognizer.model, recognizer.model.layer4, frames, 1, is_2d=True)
    torch.testing.assert_close(cam.map, expected, rtol=1e-4, atol=1e-5)


def test_map_peaks_on_the_patch_that_drives_the_class():
    """Channel 0 sees red, channel 1 green; class 0 reads channel 0 only. A red patch and an equally
    bright green patch: only the red one can drive class 0, so the map peaks there."""
    backbone = nn.Module()
    backbone.layer4 = nn.Conv3d(3, 2, 1, bias=False)
    with torch.no_grad():
        backbone.layer4.weight.zero_()
        backbone.layer4.weight[0, 0] = 1.0  # red
        backbone.layer4.weight[1, 1] = 1.0  # green
    backbone.forward = lambda x: backbone.layer4(x)  # type: ignore[method-assign]
    backbone.out_channels = 2
    recognizer = Recognizer3D(backbone, 2, normalization=Normalization((0, 0, 0), (1, 1, 1), 1.0),
                              defaults=Defaults(2, 1, 1, 32, 32), name="probe", dropout=0).eval()
    with torch.no_grad():
        recognizer.cls_head.fc_cls.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    generator = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 30, (3, 2, 32, 32), generator=generator).to(torch.uint8)
    clip[0, :, 8:16, 20:28] = 220  # red patch
    clip[1, :, 20:28, 2:10] = 250  # brighter green patch
    cam = compute_gradcam(recognizer, clip, target_class=0)
    peak = np.unravel_index(int(cam.map.argmax()), tuple(cam.map.shape))
    assert 8 <= peak[1] < 16 and 20 <= peak[2] < 28
    assert cam.map[:, 9:15, 21:27].min() > 0.8 and cam.map[:, 21:27, 3:9].max() < 0.3
    green = compute_gradcam(recognizer, clip, target_class=1)  # and class 1 points at the green patch
    assert green.map[:, 21:27, 3:9].min() > 0.8 and green.map[:, 9:15, 21:27].max() < 0.3


def test_cli_writes_png_gif_and_npy(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.video.r3d_18(num_classes=3).state_dict(), tmp_path / "r3d.pth")
    video = write_video(tmp_path / "walk.mp4", synthetic_frames(8, 32, 40, seed=1), fps=8, lossless=True)
    (tmp_path / "labels.txt").write_text("walk\nrun\njump\n")
    out = tmp_path / "pictures"
    result = CliRunner().invoke(app, [
        "recognize", str(video), "--backbone", "r3d_18", "--checkpoint", str(tmp_path / "r3d.pth"),
        "--num-clips", "2", "--clip-len", "4", "--short-side", "32", "--crop-size", "32", "--device", "cpu",
        "--gradcam", str(out), "--labels", str(tmp_path / "labels.txt"), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["gradcam"]["class"] == record["top_k"][0]["index"] and record["gradcam"]["layer"] == "model.layer4"
    heat = np.load(out / "walk.mp4.gradcam.npy")
    assert heat.dtype == np.float32 and heat.shape == (1, 4, 32, 32) and heat.min() == 0 and heat.max() <= 1
    assert record["gradcam"]["views"] in ([0], [1])  # the top-scoring one of the 2 views
    gif = Image.open(out / "walk.mp4.gradcam.gif")
    gif.verify()
    gif = Image.open(out / "walk.mp4.gradcam.gif")
    assert gif.size == (32, 32) and gif.n_frames == 4
    png = Image.open(out / "walk.mp4.gradcam.png")
    png.load()
    layout = sheet_layout([4], 32, 32)  # one view of 4 frames; pixels: tests/test_gradcam_sheets.py
    assert png.format == "PNG" and png.size == (layout.width, layout.height)


def test_cli_2d_model_explains_the_segments_of_the_first_crop(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    video = write_video(tmp_path / "jump.mp4", synthetic_frames(9, 32, 40, seed=2), fps=8, lossless=True)
    out = tmp_path / "pictures"
    result = CliRunner().invoke(app, [
        "recognize", str(video), "--backbone", "torchvision.resnet18", "--checkpoint", str(tmp_path / "r18.pth"),
        "--num-clips", "3", "--short-side", "32", "--crop-size", "32", "--device", "cpu", "--gradcam", str(out),
        "--gradcam-class", "1"])
    assert result.exit_code == 0, result.output
    heat = np.load(out / "jump.mp4.gradcam.npy")[0]
    assert heat.shape == (3, 32, 32)  # T = the 3 segments of the (only) crop
    recognizer = build_recognizer("torchvision.resnet18", checkpoint=str(tmp_path / "r18.pth")).recognizer.eval()
    from lfbtool.recognize.scoring import RecognizeOptions, open_input, resolve_settings, video_views

    settings = resolve_settings(recognizer, RecognizeOptions(num_clips=3, short_side=32, crop_size=32))
    views, _ = video_views(open_input(video, settings), settings)  # [3, 3, 1, 32, 32], one frame per view
    expected = lfbtool.gradcam(recognizer, views[:, :, 0].transpose(0, 1), target_class=1)
    np.testing.assert_allclose(heat, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert Image.open(out / "jump.mp4.gradcam.gif").n_frames == 3
