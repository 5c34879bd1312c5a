"""Backbone registry, SlowOnly R50 against an independent functional forward, trunk shapes/strides."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision

from lfbtool.errors import LfbError
from lfbtool.models import (
    BackboneSpec,
    Normalization,
    backbone_spec,
    create_backbone,
    list_backbones,
    register_backbone,
)
from lfbtool.models import registry as registry_module
from tests.reference import slowonly_r50_expected_shapes, slowonly_r50_reference


@pytest.fixture(scope="module")
def slowonly() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_backbone("slowonly_r50")
    with torch.no_grad():  # random BN statistics, so BN is not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.3, 1.0)
                module.bias.uniform_(-0.2, 0.2)
    return model


def test_registry_lists_every_backbone() -> None:
    specs = {spec.name: spec for spec in list_backbones()}
    assert sorted(specs) == ["mc3_18", "mvit_v1_b", "mvit_v2_s", "r2plus1d_18", "r3d_18", "s3d", "slowfast_r50",
                             "slowfast_r50_8x8", "slowonly_r101", "slowonly_r50", "slowonly_r50_nl", "swin3d_b",
                             "swin3d_s", "swin3d_t", "vit_b_videomae", "vit_l_videomae", "vit_s_videomae"]
    assert all(isinstance(spec, BackboneSpec) for spec in specs.values())
    mm = specs["slowonly_r50"].normalization
    assert mm == Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 255)
    tv = specs["r3d_18"].normalization
    assert tv == Normalization((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 1)
    assert specs["slowonly_r50"].checkpoint_prefix == "backbone."
    assert "fc." in specs["r3d_18"].ignored_prefixes and "classifier." in specs["s3d"].ignored_prefixes


def test_unknown_backbone_lists_known_names() -> None:
    with pytest.raises(LfbError, match=r"unknown backbone 'resnet9000'.*mc3_18.*slowonly_r50"):
        create_backbone("resnet9000")


def test_register_backbone_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_BUILDERS", dict(registry_module._BUILDERS))
    monkeypatch.setattr(registry_module, "_SPECS", dict(registry_module._SPECS))
    spec = BackboneSpec("tiny_test", 3, 1, Normalization((0, 0, 0), (1, 1, 1), 255), "identity")

    @register_backbone(spec)
    def tiny_test() -> torch.nn.Module:
        return torch.nn.Identity()

    model = create_backbone("tiny_test")
    assert model.spec is spec and backbone_spec("tiny_test") is spec and not model.training


def test_slowonly_state_dict_matches_mmaction_layout(slowonly: torch.nn.Module) -> None:
    expected = slowonly_r50_expected_shapes()
    actual = {key: tuple(value.shape) for key, value in slowonly.state_dict().items()}
    assert actual == expected
    # spot checks straight from MMAction2 checkpoints
    assert actual["conv1.conv.weight"] == (64, 3, 1, 7, 7)
    assert actual["layer3.0.conv1.conv.weight"] == (256, 512, 3, 1, 1)
    assert actual["layer1.0.downsample.conv.weight"] == (256, 64, 1, 1, 1)
    assert actual["layer4.2.conv3.conv.weight"] == (2048, 512, 1, 1, 1)
    assert "layer2.1.downsample.conv.weight" not in actual


def test_slowonly_equals_functional_reference(slowonly: torch.nn.Module) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, 4, 64, 64)
    state = {key: value.clone() for key, value in slowonly.state_dict().items()}
    with torch.inference_mode():
        ours = slowonly(x)
        ref = slowonly_r50_reference(state, x)
    assert ours.shape == (1, 2048, 4, 4, 4)
    assert torch.isfinite(ref).all() and ref.std() > 0 and (ref > 0).any()
    assert torch.equal(ours, ref)


def test_slowonly_tv_weights_refused() -> None:
    with pytest.raises(LfbError, match="slowonly_r50 has no torchvision weights"):
        create_backbone("slowonly_r50", weights="R3D_18_Weights.KINETICS400_V1")


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("slowonly_r50", (1, 3, 4, 64, 64)),
        ("r3d_18", (1, 3, 8, 32, 32)),
        ("mc3_18", (1, 3, 8, 32, 32)),
        ("r2plus1d_18", (1, 3, 8, 32, 32)),
        ("s3d", (1, 3, 8, 64, 64)),
    ],
)
def test_output_channels_and_strides(name: str, shape: tuple[int, ...]) -> None:
    spec = backbone_spec(name)
    model = create_backbone(name)
    assert model.spec == spec and not model.training
    with torch.inference_mode():
        out = model(torch.randn(*shape))
    n, _, t, h, w = shape
    expected_t = math.ceil(t / spec.temporal_stride)
    assert tuple(out.shape) == (n, spec.channels, expected_t, h // spec.stride, w // spec.stride)


@pytest.mark.parametrize("name", ["r3d_18", "s3d"])
def test_torchvision_trunk_keys_are_classifier_keys_minus_head(name: str) -> None:
    trunk = create_backbone(name)
    full = getattr(torchvision.models.video, name)(weights=None).state_dict()
    head = tuple(backbone_spec(name).ignored_prefixes)
    assert set(trunk.state_dict()) == {key for key in full if not key.startswith(head)}


def test_s3d_refuses_short_clips() -> None:
    model = create_backbone("s3d")
    with pytest.raises(LfbError, match="at least 5 frames, got 4"):
        model(torch.zeros(1, 3, 4, 64, 64))


def test_tv_weights_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(url: str, destination: str, *args: object, **kwargs: object) -> None:
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(
        LfbError, match=r"cannot download torchvision weights R3D_18_Weights.*pass it with checkpoint"
    ):
        create_backbone("r3d_18", weights="R3D_18_Weights.KINETICS400_V1")
    with pytest.raises(
        LfbError, match=r"'MC3_18_Weights.KINETICS400_V1' is not a torchvision weight of r3d_18.*R3D_18"
    ):
        create_backbone("r3d_18", weights="MC3_18_Weights.KINETICS400_V1")


def test_tv_weights_from_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must use the cached file"))
    torch.manual_seed(3)
    classifier = torchvision.models.video.mc3_18(weights=None)
    url = torchvision.models.video.MC3_18_Weights.KINETICS400_V1.url
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    torch.save(classifier.state_dict(), cached)
    trunk = create_backbone("mc3_18", weights="MC3_18_Weights.KINETICS400_V1")
    assert torch.equal(trunk.state_dict()["layer4.1.conv2.0.weight"], classifier.layer4[1].conv2[0].weight)
    assert torch.equal(trunk.state_dict()["stem.1.running_mean"], classifier.stem[1].running_mean)
