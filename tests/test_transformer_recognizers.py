"""torchvision's video transformers and VideoMAE as recognizers: specs read off torchvision's weights
enums, logits bitwise torchvision's own forward, trunk maps and keys, Grad-CAM on the token grid (equal
to the hook recipe, peaking where the class is decided), and ``recognize`` with VideoMAE's Kinetics
test views, ``--features``, ``--gradcam`` and chunked views."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from lfbtool import read_embeddings
from lfbtool.cli import app
from lfbtool.errors import LfbError
from lfbtool.models import backbone_spec, create_backbone
from lfbtool.models.checkpoint import load_strict
from lfbtool.models.heads import TimeSformerHead
from lfbtool.models.recognizer_factory import create_recognizer
from lfbtool.models.recognizers import Recognizer3D, TorchvisionVideoClassifier
from lfbtool.models.tv_transformers import as_classifier
from lfbtool.recognize.gradcam import compute_gradcam
from lfbtool.recognize.scoring import RecognizeOptions, open_input, resolve_settings, video_views
from lfbtool.testing.synthetic import synthetic_frames, write_video
from tests.reference import videomae_reference
from tests.test_gradcam import reference_cam
from tests.test_vit_mae import random_state

TRANSFORMERS = ("mvit_v1_b", "mvit_v2_s", "swin3d_b", "swin3d_s", "swin3d_t")
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)


@pytest.fixture(scope="module")
def classifiers() -> dict[str, nn.Module]:
    """torchvision's own models (5 classes), built once. MViT's grid bookkeeping is set for 4-frame
    clips of 32x32 (v1: its absolute table replaced by one of that size) and 64x96 (v2, relative
    positions), so that torchvision's forward runs on small clips."""
    torch.manual_seed(0)
    models = {name: torchvision.models.get_model(name, weights=None, num_classes=5).eval()
              for name in ("mvit_v1_b", "mvit_v2_s", "swin3d_t")}
    for name, (t, h, w) in (("mvit_v1_b", (2, 8, 8)), ("mvit_v2_s", (2, 16, 24))):
        encoding = models[name].pos_encoding
        encoding.temporal_size, encoding.spatial_size = t, (h, w)
        if encoding.spatial_pos is not None:
            encoding.spatial_pos = nn.Parameter(torch.randn(h * w, encoding.spatial_pos.shape[1]) * 0.02)
            encoding.temporal_pos = nn.Parameter(torch.randn(t, encoding.temporal_pos.shape[1]) * 0.02)
    return models


def _recognizer(classifiers, name: str) -> TorchvisionVideoClassifier:
    """What create_recognizer builds for ``name``, around the module's prepared torchvision model."""
    spec = backbone_spec(name)
    return TorchvisionVideoClassifier(as_classifier(classifiers[name], name), 5, normalization=spec.normalization,
                                      defaults=spec.test_clip, name=name).eval()


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_specs_are_torchvisions_published_evaluation(name: str) -> None:
    spec = backbone_spec(name)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transforms = weights.transforms()
    assert spec.normalization.mean == pytest.approx(tuple(transforms.mean), abs=0)
    assert spec.normalization.std == pytest.approx(tuple(transforms.std), abs=0)
    assert spec.normalization.value_range == 1 and spec.torchvision_model == name
    test = spec.test_clip
    assert (test.short_side, test.crop_size) == (transforms.resize_size[0], transforms.crop_size[0])
    docs = weights.meta["_docs"]
    assert test.clip_len == int(re.search(r"clip_len=(\d+)", docs)[1])
    assert test.num_clips == int(re.search(r"clips_per_video=(\d+)", docs)[1])
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    assert spec.channels == model.norm.normalized_shape[0]
    assert spec.clip_frames == (16 if name == "mvit_v1_b" else None)
    trunk_keys = {key for key in model.state_dict() if not key.startswith(spec.ignored_prefixes)}
    if spec.no_bank is None:
        with torch.device("meta"):
            assert set(create_backbone(name).state_dict()) == trunk_keys  # a classifier file loads into the trunk


@pytest.mark.parametrize(("name", "size"), [("mvit_v1_b", (32, 32)), ("mvit_v2_s", (64, 96)), ("swin3d_t", (64, 96))])
def test_classifier_logits_are_torchvisions_bit_for_bit(classifiers, name: str, size: tuple[int, int]) -> None:
    model = classifiers[name]
    recognizer = _recognizer(classifiers, name)
    assert list(recognizer.weights_module().state_dict()) == list(model.state_dict())  # torchvision's keys
    seen = []
    hook = recognizer.model.grid.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    x = torch.randn(2, 3, 4, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(recognizer.classify(x), model(x))
    hook.remove()
    spec = backbone_spec(name)  # the grid: the trunk's map (Swin) or the last block's grid (MViT)
    assert seen == [(2, spec.channels, 4 // spec.temporal_stride, size[0] // spec.stride, size[1] // spec.stride)]
    head = [m for m in model.head.modules() if isinstance(m, nn.Linear)][-1]  # --features: the head's input
    fed = []
    hook = head.register_forward_pre_hook(lambda m, i: fed.append(i[0]))
    pixels = torch.randint(0, 256, (2, 3, 4, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        logits, embeddings = recognizer.forward_with_embeddings(pixels)
        assert torch.equal(logits, model(recognizer.normalize(pixels)))
    hook.remove()
    assert embeddings.shape == (2, spec.channels) and torch.equal(embeddings, fed[-1])
    if name == "mvit_v1_b":
        with pytest.raises(LfbError, match=r"^mvit_v1_b has an absolute position table for 4x32x32 clips.*"
                                           r"got about 4x64x64: use clip_len 4 and a 32 crop$"):
            recognizer.classify(torch.zeros(1, 3, 4, 64, 64))


def test_swin_and_mvit_v2_trunks_map_any_clip_size() -> None:
    """The bank trunks (create_backbone) on a clip torchvision's own MViT refuses (its grid is fixed)."""
    with torch.device("meta"):
        for name in ("swin3d_t", "mvit_v2_s"):
            spec = backbone_spec(name)
            out = create_backbone(name)(torch.empty(1, 3, 6, 64, 86))
            assert tuple(out.shape) == (1, spec.channels, 3, 2, math.ceil(86 / 32)), name


@pytest.mark.parametrize("name", ["mvit_v2_s", "swin3d_t"])
def test_gradcam_of_torchvision_transformers_is_the_hook_recipe_on_the_grid(classifiers, name: str) -> None:
    recognizer = _recognizer(classifiers, name)
    clip = torch.randint(0, 256, (3, 4, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    cam = compute_gradcam(recognizer, clip)  # the top-1 class: some grid cell must push it up
    assert cam.layer == "model.grid" and cam.map.shape == (4, 64, 96)
    expected = reference_cam(recognizer, recognizer.model.grid, clip[None].float(), cam.target_class, is_2d=False)
    torch.testing.assert_close(cam.map, expected, rtol=1e-4, atol=1e-5)
    assert float(cam.map.max()) == pytest.approx(1.0)  # gradients reach the grid (MViT: the last block's input)


def _probe_vit() -> Recognizer3D:
    """A one-block ViT-S whose blocks add nothing, with no position table: token channel 0 is a patch's
    mean red, channel 1 its mean green, channel 2 a constant 10 (so fc_norm is nearly a scaling);
    class 0 reads channel 0, class 1 channel 1."""
    backbone = create_backbone("vit_s_videomae", depth=1, mean_pooling=True, img_size=64, num_frames=4)
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.zero_()
        backbone.pos_embed.zero_()
        backbone.fc_norm.weight.fill_(1.0)
        projection = backbone.patch_embed.projection
        projection.weight[0, 0] = projection.weight[1, 1] = 1 / projection.weight[0, 0].numel()
        projection.bias[2] = 10.0
    head = TimeSformerHead(2, 384)
    with torch.no_grad():
        head.fc_cls.weight.zero_()
        head.fc_cls.weight[0, 0] = head.fc_cls.weight[1, 1] = 1.0
        head.fc_cls.bias.zero_()
    return Recognizer3D(backbone, 2, head=head).eval()


def test_vit_gradcam_peaks_on_the_patch_that_drives_the_class() -> None:
    recognizer = _probe_vit()
    generator = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 30, (3, 4, 64, 64), generator=generator).to(torch.uint8)
    clip[0, :, 16:32, 32:48] = 220  # a red 16x16 patch: one token per tubelet
    clip[1, :, 48:64, 0:16] = 250  # a brighter green one
    cam = compute_gradcam(recognizer, clip, target_class=0)
    assert cam.layer == "backbone.grid" and cam.map.shape == (4, 64, 64)
    expected = reference_cam(recognizer, recognizer.backbone.grid, clip[None].float(), 0, is_2d=False)
    torch.testing.assert_close(cam.map, expected, rtol=1e-4, atol=1e-5)
    # one token per 16x16 cell, resized trilinearly: the map peaks at the red cell's centre
    peak = np.unravel_index(int(cam.map.argmax()), tuple(cam.map.shape))
    assert 16 <= peak[1] < 32 and 32 <= peak[2] < 48
    assert cam.map[:, 22:26, 38:42].min() > 0.8 and cam.map[:, 54:58, 6:10].max() < 0.1
    green = compute_gradcam(recognizer, clip, target_class=1)
    assert green.map[:, 54:58, 6:10].min() > 0.8 and green.map[:, 22:26, 38:42].max() < 0.1


@pytest.fixture(scope="module")
def vit_recognizer(tmp_path_factory):
    """A VideoMAE V2 ViT-S Kinetics recognizer checkpoint (Runner format, every weight random)."""
    torch.manual_seed(2)
    recognizer = create_recognizer("vit_s_videomae", num_classes=5).eval()
    state = {f"backbone.{k}": v for k, v in random_state(recognizer.backbone, seed=7).items()}
    state.update({"cls_head.fc_cls.weight": 0.2 * torch.randn(5, 384), "cls_head.fc_cls.bias": torch.randn(5)})
    load_strict(recognizer.weights_module(), state, source="k400.pth", target=recognizer.name)
    path = tmp_path_factory.mktemp("vit_k400") / "vit_s_k400.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    return path, recognizer, state


def test_vit_recognize_uses_the_configs_views_and_writes_features_and_gradcam(vit_recognizer, tmp_path) -> None:
    """Defaults: ThreeCrop and prob averaging of the VideoMAE configs (16x1 clips and 32 px here); the
    stored embedding is the mean over views of fc_norm(token mean), computed by the reference."""
    path, recognizer, state = vit_recognizer
    video = write_video(tmp_path / "v.mp4", synthetic_frames(20, 32, 40, seed=3), fps=8, lossless=True)
    result = CliRunner().invoke(app, [
        "recognize", str(video), "--backbone", "vit_s_videomae", "--checkpoint", str(path), "--num-clips", "2",
        "--frame-interval", "1", "--short-side", "32", "--crop-size", "32", "--device", "cpu", "--json",
        "--features", str(tmp_path / "f.h5"), "--gradcam", str(tmp_path / "cam")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["views"] == 6 and record["gradcam"]["layer"] == "backbone.grid"
    stored = read_embeddings(tmp_path / "f.h5")
    assert stored.settings["crops"] == "three" and stored.average_clips == "prob"
    settings = resolve_settings(recognizer, RecognizeOptions(num_clips=2, frame_interval=1, short_side=32,
                                                             crop_size=32))
    views, _ = video_views(open_input(video, settings), settings)  # [6, 3, 16, 32, 32], crop-major
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    with torch.inference_mode():
        pooled = videomae_reference(backbone, (views.float() - MEAN) / STD, heads=6)
    np.testing.assert_allclose(stored.embeddings[0], pooled.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    probs = torch.softmax(torch.nn.functional.linear(pooled, state["cls_head.fc_cls.weight"],
                                                     state["cls_head.fc_cls.bias"]), dim=1).mean(0)
    assert record["top_k"][0]["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    heat = np.load(tmp_path / "cam" / "v.mp4.gradcam.npy")  # [views drawn, T, H, W]: the top-scoring view
    assert heat.shape == (1, 16, 32, 32) and heat.min() == 0 and heat.max() == pytest.approx(1.0)
    assert record["gradcam"]["views"][0] in range(6)


def test_vit_chunked_views_give_the_unchunked_scores(vit_recognizer) -> None:
    # matmul kernels block differently for other batch sizes: equal to float32 rounding, not bitwise
    recognizer = vit_recognizer[1]
    imgs = torch.randint(0, 256, (1, 4, 3, 16, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    full = recognizer.forward_test(imgs, average_clips="none")
    for chunk in (1, 3):
        chunked = recognizer.forward_test(imgs, average_clips="none", max_testing_views=chunk)
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)
    alone = torch.cat([recognizer(view[None]) for view in imgs[0]])
    assert torch.equal(alone, recognizer.forward_test(imgs, average_clips="none", max_testing_views=1)[0])
