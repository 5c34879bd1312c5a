"""Shared by the extraction benchmarks: the best of alternating runs of extract and of the bare forward."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Timings:
    full_s: float  # run_extract end to end (start-up included)
    steady_s: float  # its extraction loop + merge
    bare_s: float  # the backbone alone on the same clips
    result: Any  # the last ExtractResult


def time_extract_and_bare(config: Any, model: Any, batches: list[torch.Tensor], device: torch.device,
                          repeat: int, workdir: Path) -> Timings:
    """Alternate ``run_extract(config)`` and the bare backbone forward ``repeat`` times; keep the best of each
    (single runs on a shared machine swing by several percent)."""
    from lfbtool.extract.run import run_extract

    full_s = steady_s = bare_s = float("inf")
    result = None
    for attempt in range(repeat):
        config.out = Path(workdir) / f"out{attempt}"
        started = time.perf_counter()
        result = run_extract(config, show_progress=False)
        full_s = min(full_s, time.perf_counter() - started)
        steady_s = min(steady_s, result.loop_seconds + result.merge_seconds)
        with torch.inference_mode():
            started = time.perf_counter()
            for batch in batches:
                model.backbone(model.normalize(batch.to(device)))
            if device.type == "cuda":
                torch.cuda.synchronize()
            bare_s = min(bare_s, time.perf_counter() - started)
    return Timings(full_s, steady_s, bare_s, result)
