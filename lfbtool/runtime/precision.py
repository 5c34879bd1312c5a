"""Compute precision of the backbone forward: fp32 (exact, the default), bf16 or fp16 autocast.

Mixed precision pays only with channels-last tensors and hardware bf16: SlowOnly-R50 on a 4x256x340
clip took 0.70 s in fp32, 0.53 s under bf16 autocast with contiguous tensors and 0.21 s with the model
and input in ``channels_last_3d`` on a Xeon with AMX-bf16 (issue 11's measurement); a CPU without
AVX512-bf16/AMX emulates bf16 and is far slower than fp32 (``make bench`` shows the ratio). Only
the backbone runs reduced: its maps come back as fp32, so RoIAlign and the head's pooling see the
same dtype as in fp32 (and the head's fp16 cast stays last). fp32 is left exactly as it was: no
autocast, no memory-format change, bitwise the same result.

``auto`` (:func:`check_precision`) picks bf16 only where the device computes it natively (CPU flags
``amx_bf16``/``avx512_bf16``, CUDA compute capability 8.0 on), else fp32. The option's enum,
:class:`~lfbtool.choices.Precision`, lives in ``lfbtool.choices`` so that the CLI parses it without
importing torch; this module is the torch side.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lfbtool.choices import Precision
from lfbtool.errors import LfbError

__all__ = ["Precision", "autocast", "channels_last", "check_precision", "cpu_native_bf16", "native_bf16",
           "prepare_model", "run_backbone"]

#: Where the CPU's feature flags are read (tests point it at a file of their own).
CPUINFO = Path("/proc/cpuinfo")
#: Flags of CPUs that compute bf16 in hardware (AMX tiles, AVX512-BF16 dot products). Without them
#: oneDNN emulates bf16 and autocast runs far slower than fp32 (0.05x on an AVX2-only EPYC).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

_DTYPES = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (``cpuinfo``: the text of /proc/cpuinfo; default: read :data:`CPUINFO`)
    name ``amx_bf16`` or ``avx512_bf16``. An unreadable file counts as no native bf16."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags" and any(flag in value.split() for flag in BF16_CPU_FLAGS):
            return True
    return False


def native_bf16(device: torch.device | str, cpuinfo: str | None = None) -> bool:
    """Whether ``device`` computes bf16 in hardware: CPU flags (see :func:`cpu_native_bf16`), or a
    CUDA device of compute capability 8.0 on (emulated bf16, as on a V100, runs slower than fp32)."""
    device = torch.device(device)
    if device.type != "cuda":
        return cpu_native_bf16(cpuinfo)
    if not torch.cuda.is_available():
        return True  # no CUDA at all is resolve_device's error, not this option's
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def check_precision(precision: str | Precision, device: torch.device | str, *, cpuinfo: str | None = None,
                    warn: Callable[[str], None] | None = None) -> Precision:
    """The concrete precision for ``device``: ``auto`` becomes bf16 where ``device`` computes it
    natively, else fp32; a precision ``device`` cannot run is one LfbError. An explicit bf16 on a CPU
    without native bf16 is allowed but slow: ``warn`` (when given) receives one line saying so."""
    chosen = Precision.parse(precision, "--precision")
    device = torch.device(device)
    if chosen is Precision.auto:
        return Precision.bf16 if native_bf16(device, cpuinfo) else Precision.fp32
    if chosen is Precision.fp16 and device.type != "cuda":
        raise LfbError(f"--precision fp16 needs a CUDA device, not {device}; use bf16 or fp32")
    if chosen is Precision.bf16 and not native_bf16(device, cpuinfo):
        if device.type == "cuda":
            raise LfbError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                           "use fp16 or fp32")
        if warn is not None:
            warn(f"--precision bf16: this CPU has no native bf16 (no {' or '.join(BF16_CPU_FLAGS)} flag); "
                 "it will be slower than fp32 (use fp32 or auto)")
    return chosen  # type: ignore[return-value]


def _concrete(precision: str | Precision) -> Precision:
    """A precision the forward can run: ``auto`` must have been resolved by :func:`check_precision`."""
    chosen = Precision(precision)
    if chosen is Precision.auto:
        raise ValueError("precision 'auto' must be resolved with check_precision(precision, device) first")
    return chosen


def autocast(precision: str | Precision, device: torch.device | str) -> AbstractContextManager[Any]:
    """``torch.autocast`` to the precision's dtype on ``device``; a no-op context for fp32."""
    chosen = _concrete(precision)
    if chosen is Precision.fp32:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[chosen])


def _memory_format(ndim: int) -> torch.memory_format | None:
    return {5: torch.channels_last_3d, 4: torch.channels_last}.get(ndim)


def channels_last(x: Tensor, precision: str | Precision) -> Tensor:
    """A 5-D input in ``channels_last_3d`` (4-D: ``channels_last``) for bf16/fp16; fp32 as given."""
    layout = _memory_format(x.ndim)
    if _concrete(precision) is Precision.fp32 or layout is None:
        return x
    return x.contiguous(memory_format=layout)


def prepare_model(model: nn.Module, precision: str | Precision) -> nn.Module:
    """Put the weights of ``model`` (in place, after ``.to(device)``) in channels-last layout for
    bf16/fp16: 5-D ones ``channels_last_3d``, 4-D ones ``channels_last``. fp32: untouched."""
    if _concrete(precision) is Precision.fp32:
        return model
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            layout = _memory_format(tensor.ndim)
            if layout is not None:
                tensor.data = tensor.data.contiguous(memory_format=layout)
    return model


def _as_float(maps: Any) -> Any:
    if isinstance(maps, Tensor):
        return maps.float()
    if isinstance(maps, (tuple, list)):
        return type(maps)(_as_float(m) for m in maps)
    raise TypeError(f"a backbone returns a tensor or a tuple of tensors, got {type(maps).__name__}")


def run_backbone(backbone: nn.Module, x: Tensor, precision: str | Precision) -> Any:
    """``backbone(x)`` in ``precision``; the maps (a tensor, or a tuple for two-pathway backbones)
    come back as fp32 for RoIAlign and pooling. fp32 is the plain call, bit for bit."""
    if _concrete(precision) is Precision.fp32:
        return backbone(x)
    with autocast(precision, x.device):
        maps = backbone(channels_last(x, precision))
    return _as_float(maps)
