"""A checkpoint with NaN/Inf weights or a negative BatchNorm variance is refused at load, naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lfbtool.errors import LfbError
from lfbtool.models import check_finite_weights, create_backbone, load_backbone_weights

try:
    from tests.test_extract_errors import assert_one_line_error, no_bank_anywhere, run_cli
except ImportError:  # pytest run with tests/ (not the repo root) on sys.path
    from test_extract_errors import assert_one_line_error, no_bank_anywhere, run_cli

BROKEN = [
    ("conv1.conv.weight", float("nan"), "NaN"),
    ("layer2.0.conv1.bn.bias", float("inf"), "Inf"),
    ("layer3.1.conv2.bn.running_var", -0.5, "negative"),
]


def _broken_state(key: str, value: float) -> dict[str, torch.Tensor]:
    state = {f"backbone.{k}": v.clone() for k, v in create_backbone("slowonly_r50").state_dict().items()}
    state[f"backbone.{key}"].view(-1)[3] = value
    return state


@pytest.mark.parametrize(("key", "value", "word"), BROKEN)
def test_broken_tensor_refused_with_key_and_file(key: str, value: float, word: str) -> None:
    model = create_backbone("slowonly_r50")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LfbError) as info:
        load_backbone_weights(model, _broken_state(key, value), source="ckpt/bad.pth")
    message = str(info.value)
    assert message.startswith("ckpt/bad.pth: tensor ") and key in message and word in message
    assert "\n" not in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_check_finite_weights_passes_clean_and_integer_tensors() -> None:
    check_finite_weights(
        {"a.weight": torch.randn(3), "a.running_var": torch.zeros(2), "a.num_batches_tracked": torch.tensor(5),
         "empty": torch.zeros(0)},
        source="ok.pth",
    )
    with pytest.raises(LfbError, match=r"x\.pth: tensor h holds Inf"):
        check_finite_weights({"h": torch.tensor([1.0, float("-inf")], dtype=torch.float16)}, source="x.pth")


def test_extract_refuses_nan_checkpoint_and_leaves_nothing(tiny_data, tmp_path: Path, capsys) -> None:
    state = torch.load(tiny_data.checkpoint, weights_only=True)
    state["state_dict"]["backbone.layer1.0.conv2.conv.weight"].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    out = tmp_path / "out"
    code, lines = run_cli(tiny_data.extract_args(out) + ["--checkpoint", str(bad)], capsys)
    assert code == 2
    assert_one_line_error(code, lines, str(bad), "layer1.0.conv2.conv.weight", "NaN")
    assert no_bank_anywhere(tmp_path)
    assert not out.exists() or not any(out.rglob("*"))  # no attempt record, no shard: no --resume needed
    code, lines = run_cli(tiny_data.extract_args(out), capsys)  # corrected rerun
    assert code == 0, lines
    assert (out / "lfb_train.h5").is_file()
