"""torchvision weights found in torch hub's cache are read with ``weights_only``: a planted pickle that
would run code is refused in one line and never runs; a plain state dict loads as saved."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from lfbtool.errors import LfbError
from lfbtool.models.weights import cached_weights_file, resolve_weights, weights_state_dict


class _Payload:
    """Unpickling this calls ``os.system`` (touch a marker file) under a full unpickler."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_planted_cache_file_is_refused_and_never_runs(hub_dir, tmp_path) -> None:
    weights = resolve_weights("r3d_18", "KINETICS400_V1")
    cached = cached_weights_file(weights)
    assert cached.parent == hub_dir / "checkpoints" and cached.name.endswith(".pth")
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"x": _Payload(str(marker))}, cached)  # torch.save pickles it; the reduce runs on load
    with pytest.raises(LfbError) as caught:
        weights_state_dict(weights)
    assert not marker.exists()
    message = str(caught.value)
    assert str(cached) in message and "refused" in message and "\n" not in message


def test_plain_state_dict_in_the_cache_loads(hub_dir) -> None:
    weights = resolve_weights("r3d_18", "KINETICS400_V1")
    cached = cached_weights_file(weights)
    cached.parent.mkdir(parents=True)
    state = {"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.tensor([1.0, -1.0])}
    torch.save(state, cached)
    loaded = weights_state_dict(weights)
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value)


def test_pickle_error_class_is_what_torch_raises(hub_dir, tmp_path) -> None:
    """Guard on the assumption the refusal branch relies on."""
    path = tmp_path / "bad.pth"
    torch.save({"x": _Payload(str(tmp_path / "m"))}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
