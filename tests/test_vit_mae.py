"""VideoMAE ViT-S/B/L in MMAction2's VisionTransformer layout: key names and shapes derived independently
(tests/reference.py), strict loading of Runner-format checkpoints, the fp32 forward equal to the
functional reference (torch.equal: the same ops in the same order), the recognizer (fc_norm + TimeSformer
head) and its Kinetics test defaults."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfbtool.errors import LfbError
from lfbtool.models import backbone_spec, create_backbone, load_backbone_weights
from lfbtool.models.checkpoint import load_strict
from lfbtool.models.recognizer_factory import create_recognizer
from lfbtool.models.vit_mae import sinusoid_table
from lfbtool.recognize.scoring import RecognizeOptions, resolve_settings
from lfbtool.runtime.precision import run_backbone
from tests.reference import sinusoid_reference, videomae_expected_shapes, videomae_reference

SIZES = {"vit_s_videomae": (384, 12, 6), "vit_b_videomae": (768, 12, 12), "vit_l_videomae": (1024, 24, 16)}


def random_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Every parameter random (q/v biases and LayerNorms included, so no term is the identity or zero);
    the position table as the model holds it."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key == "pos_embed":
            state[key] = value.clone()
        elif key.endswith("norm1.weight") or key.endswith("norm2.weight") or "norm.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=generator)
        else:
            state[key] = 0.05 * torch.randn(value.shape, generator=generator)
    return state


def runner_checkpoint(state: dict[str, torch.Tensor], prefix: str = "backbone.") -> dict[str, object]:
    """An MMEngine Runner checkpoint as torch.load returns it: meta, state_dict, optimizer, message_hub."""
    return {"meta": {"epoch": 20}, "state_dict": {prefix + k: v for k, v in state.items()}, "optimizer": {},
            "message_hub": {}}


@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("mean_pooling", [False, True])
def test_keys_and_shapes_are_mmaction2s(name: str, mean_pooling: bool) -> None:
    dims, depth, _ = SIZES[name]
    with torch.device("meta"):  # the real sizes, without allocating them
        model = create_backbone(name, mean_pooling=mean_pooling)
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert actual == videomae_expected_shapes(dims, depth, mean_pooling=mean_pooling)
    assert backbone_spec(name).channels == dims


def test_position_table_is_the_fixed_sinusoid() -> None:
    table = sinusoid_table(1568, 768)
    assert table.shape == (1, 1568, 768) and table.dtype == torch.float32
    # float64 math either way; the two formulas may differ in the last float64 bit, never after rounding
    for rows in (range(48), range(1520, 1568)):
        torch.testing.assert_close(table[:, rows.start:rows.stop], sinusoid_reference(rows, 768), rtol=0, atol=1e-7)
    model = create_backbone("vit_s_videomae", depth=1, img_size=32, num_frames=4)
    assert torch.equal(model.pos_embed, sinusoid_table(2 * 2 * 2, 384))


@pytest.mark.parametrize(("name", "depth"), [("vit_s_videomae", 2), ("vit_b_videomae", 2), ("vit_l_videomae", 1)])
@pytest.mark.parametrize("mean_pooling", [False, True])
def test_fp32_forward_equals_functional_reference(name: str, depth: int, mean_pooling: bool) -> None:
    """Real widths and heads, fewer blocks, a 64 px table: at 64x64 the table is used as stored, at
    48x80 it is resized (bicubic). Exact: the reference runs the same ops in the same order."""
    torch.set_num_threads(1)
    heads = SIZES[name][2]
    model = create_backbone(name, depth=depth, img_size=64, num_frames=4, mean_pooling=mean_pooling)
    state = random_state(model, seed=3)
    load_backbone_weights(model, runner_checkpoint(state)["state_dict"], source="runner.pth")
    torch.manual_seed(0)
    for shape in ((2, 3, 4, 64, 64), (1, 3, 4, 48, 80)):
        x = torch.randn(shape)
        with torch.inference_mode():
            ours = model(x)
            reference = videomae_reference(state, x, heads=heads, img_size=64)
        n, _, t, h, w = shape
        expected = (n, SIZES[name][0]) if mean_pooling else (n, SIZES[name][0], t // 2, h // 16, w // 16)
        assert ours.shape == expected and reference.std() > 0.1
        assert torch.equal(ours, reference), (ours - reference).abs().max()


def test_bf16_autocast_uses_fused_attention_close_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_backbone("vit_b_videomae", depth=2, img_size=64, num_frames=4)
    load_backbone_weights(model, random_state(model, seed=4), source="random")
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = run_backbone(model, x, "fp32")
        assert not calls
        reduced = run_backbone(model, x, "bf16")
    assert len(calls) == 2 and reduced.dtype == torch.float32  # one per block, maps back in fp32
    assert F.cosine_similarity(exact.flatten(), reduced.flatten(), dim=0) > 0.99


def test_strict_loading_names_missing_unexpected_and_misshaped_keys() -> None:
    model = create_backbone("vit_b_videomae", depth=1)  # the real layout, one block (loading needs tensors)
    good = {f"backbone.{k}": torch.zeros(s) for k, s in videomae_expected_shapes(768, 1, mean_pooling=False).items()}
    good["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 768)  # the detector's other parts are ignored
    load_backbone_weights(model, good, source="det.pth")  # exactly the independent layout loads
    fresh = create_backbone("vit_b_videomae", depth=1)
    without_table = {k: v for k, v in good.items() if k != "backbone.pos_embed"}
    load_backbone_weights(fresh, without_table, source="converted.pth")  # the built (fixed) table stays
    assert torch.equal(fresh.pos_embed, sinusoid_table(1568, 768))
    bad = dict(good)
    bad["backbone.blocks.1.norm1.weight"] = torch.zeros(768)  # a deeper checkpoint
    del bad["backbone.blocks.0.attn.q_bias"]
    bad["backbone.blocks.0.gamma_1"] = torch.zeros(768)  # init_values > 0 checkpoints have layer scales
    bad["backbone.pos_embed"] = torch.zeros(1, 392, 768)  # an 8-frame table
    with pytest.raises(LfbError) as error:
        load_backbone_weights(model, bad, source="bad.pth")
    text = str(error.value)
    assert "\n" not in text and text.startswith("bad.pth: checkpoint does not fit vit_b_videomae")
    assert "missing keys [blocks.0.attn.q_bias]" in text
    assert "unexpected keys [blocks.1.norm1.weight, blocks.0.gamma_1]" in text
    assert "pos_embed: checkpoint (1, 392, 768) vs model (1, 1568, 768)" in text


def test_recognizer_checkpoint_does_not_fit_the_detector_trunk() -> None:
    """Kinetics recognizers end in fc_norm (mean pooling), AVA detectors in norm: each is refused by the
    other's trunk, naming the keys."""
    detector = create_backbone("vit_s_videomae", depth=1)
    recognition = random_state(create_backbone("vit_s_videomae", depth=1, mean_pooling=True), seed=1)
    with pytest.raises(LfbError, match=r"missing keys \[norm.weight, norm.bias\]; unexpected keys \[fc_norm.weight"):
        load_backbone_weights(detector, runner_checkpoint(recognition)["state_dict"], source="k400.pth")


def test_clips_must_have_the_tables_frame_count() -> None:
    model = create_backbone("vit_s_videomae", depth=1)
    with pytest.raises(LfbError, match="exactly 16 frames.*got 8: use clip_len 16"):
        model(torch.zeros(1, 3, 8, 32, 32))


def test_recognizer_is_mmaction2s_recognizer3d_with_timesformer_head() -> None:
    torch.set_num_threads(1)
    recognizer = create_recognizer("vit_s_videomae", num_classes=7).eval()
    keys = set(recognizer.weights_module().state_dict())
    expected = {f"backbone.{k}" for k in videomae_expected_shapes(384, 12, mean_pooling=True)}
    assert keys == expected | {"cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}
    state = {f"backbone.{k}": v for k, v in random_state(recognizer.backbone, seed=2).items()}
    state.update({"cls_head.fc_cls.weight": 0.1 * torch.randn(7, 384), "cls_head.fc_cls.bias": torch.randn(7)})
    load_strict(recognizer.weights_module(), state, source="k400.pth", target=recognizer.name)
    clips = torch.randint(0, 256, (2, 3, 16, 32, 48), dtype=torch.uint8)
    with torch.inference_mode():
        logits, embeddings = recognizer.forward_with_embeddings(clips)
        x = (clips.float() - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)) / torch.tensor(
            [58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)
        pooled = videomae_reference({k.removeprefix("backbone."): v for k, v in state.items()}, x, heads=6)
    assert torch.equal(embeddings, pooled)  # the classifier's input: fc_norm of the token mean
    assert torch.equal(logits, F.linear(pooled, state["cls_head.fc_cls.weight"], state["cls_head.fc_cls.bias"]))
    settings = resolve_settings(recognizer, RecognizeOptions())
    assert (settings.clip_len, settings.frame_interval, settings.num_clips) == (16, 4, 5)
    assert (settings.short_side, settings.crop_size, settings.crops, settings.average_clips) == (224, 224, "three", "prob")
    assert resolve_settings(recognizer, RecognizeOptions(crops="center", average_clips="score")).crops == "center"
    with pytest.raises(LfbError, match="--clip-len 8: vit_s_videomae takes clips of exactly 16 frames"):
        resolve_settings(recognizer, RecognizeOptions(clip_len=8))
