"""torchrun integration: join the process group from the environment, split work, share small objects.

The same code runs in one plain process (world size 1, no process group) and under torchrun on one or
many nodes: nccl when CUDA is present, gloo otherwise.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from lfbtool.errors import LfbError, SettingError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_from_env(timeout_s: int = 1800) -> DistContext:
    """Join the process group when torchrun set RANK/WORLD_SIZE/LOCAL_RANK; otherwise a world of one."""
    if not launched_by_torchrun():
        return DistContext()
    rank, world, local = (int(os.environ[n]) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as error:  # noqa: BLE001 - rendezvous failures surface as many types
            raise LfbError(f"rank {rank}: could not join the process group ({error})", exit_code=1) from error
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)


def contiguous_block(count: int, world_size: int, rank: int) -> range:
    """Rank ``rank``'s share of ``count`` items: contiguous, sizes differ by at most one, no padding."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def all_gather(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, small), in rank order."""
    if not ctx.active:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(ctx: DistContext, failure: LfbError | None, suffix: str = "") -> None:
    """Share each rank's failure of the stage just run; every rank raises the first one.

    No rank is left waiting in a later collective for a rank that gave up, and the error reaches
    the terminal once (rank 0 prints errors marked ``all_ranks``).
    """
    status = None if failure is None else (str(failure), failure.exit_code, getattr(failure, "setting", None),
                                           getattr(failure, "message", None), getattr(failure, "also", ()))
    for rank, item in enumerate(all_gather(ctx, status)):
        if item is not None:
            message, exit_code, setting, setting_message, also = item
            if setting is not None and not rank:  # a refused setting keeps its name (the CLI shows its flag)
                raise SettingError(setting, f"{setting_message}{suffix}", also=also, exit_code=exit_code,
                                   all_ranks=True)
            where = f"rank {rank}: " if rank else ""
            raise LfbError(f"{where}{message}{suffix}", exit_code=exit_code, all_ranks=True)


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()

