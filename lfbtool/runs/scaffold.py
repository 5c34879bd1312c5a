"""One resumable run over many processes: plan on rank 0, split, write parts, assemble on rank 0.

The same choreography serves extract, detect and recognize; each passes only what is its own: the
items to do, how one rank works through its share (``work``), and how rank 0 assembles the parts
(``assemble``). Every stage ends with all ranks sharing their failures
(:func:`lfbtool.runtime.distributed.agree`), so no rank waits in a collective for one that gave up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lfbtool._io.lock import RunLock
from lfbtool.errors import LfbError, RunError
from lfbtool.runs.parts import Finished, PartWriter, RunParts, RunPlan
from lfbtool.runs.records import AttemptRecord
from lfbtool.runtime import distributed as dist

__all__ = ["PartsRun", "on_main", "run_in_parts"]

T = TypeVar("T")


def on_main(ctx: dist.DistContext, stage: Callable[[], T], *, share: bool = True) -> T | None:
    """Run ``stage`` on rank 0; every rank raises its LfbError; its result on every rank (``share``)
    or on rank 0 only."""
    result, failure = None, None
    if ctx.is_main:
        try:
            result = stage()
        except LfbError as error:
            failure = error
    dist.agree(ctx, failure)
    return dist.broadcast(ctx, result) if share else result


@dataclass
class PartsRun:
    """What a run did, the same on every rank except ``assembled`` (rank 0's result)."""

    plan: RunPlan
    produced: int = 0  # items written by this attempt, all ranks
    resumed: int = 0  # items earlier attempts had stored
    seconds: float = 0.0  # the slowest rank's work time
    assembled: Any = None


def _check_shared(ctx: dist.DistContext, parts: RunParts, plan: RunPlan) -> None:
    """Every rank must see the attempt record rank 0 wrote: OUT on a filesystem all nodes share."""
    record = AttemptRecord.path(parts.directory, parts.name, plan.attempt)
    seen = dist.all_gather(ctx, (record.is_file(), socket.gethostname()))
    blind = [f"rank {rank} on {host}" for rank, (ok, host) in enumerate(seen) if not ok]
    if blind:
        raise RunError(f"{parts.directory}: {', '.join(blind)} cannot see the files rank 0 wrote there; "
                       "the output must be on a filesystem shared by all nodes", all_ranks=True)


def run_in_parts(
    ctx: dist.DistContext,
    parts: RunParts,
    *,
    settings: dict[str, Any],
    keys: Sequence[Hashable],
    work: Callable[[list[Hashable], PartWriter], None],
    assemble: Callable[[RunParts], Any] | None,
    resume: bool,
    overwrite: bool,
    segment_size: int,
    final: Finished | None = None,
    lock: RunLock | None = None,
    other_output_hint: str | Callable[[list[str]], str] = "",
) -> PartsRun:
    """Do ``keys`` not yet stored, split in contiguous blocks over the ranks, then assemble on rank 0.

    ``work(mine, writer)`` appends each of ``mine`` (in order) to ``writer``; ``assemble(parts)`` turns
    the finished parts into the output (None: keep the parts, e.g. ``--no-merge``). ``lock``: taken by
    rank 0 before anything is written, released when the run ends (however it ends).
    """
    try:
        if lock is not None:
            on_main(ctx, lock.acquire, share=False)
        plan = on_main(ctx, lambda: parts.prepare(
            settings, keys, world_size=ctx.world_size, resume=resume, overwrite=overwrite, final=final,
            other_output_hint=other_output_hint))
        assert plan is not None
        run = PartsRun(plan=plan, resumed=len(plan.done))
        if plan.complete:
            return run
        _check_shared(ctx, parts, plan)
        done = set(plan.done)
        todo = [key for key in keys if key not in done]
        mine = [todo[i] for i in dist.contiguous_block(len(todo), ctx.world_size, ctx.rank)]
        writer = parts.writer(plan, ctx.rank, segment_size)
        failure: LfbError | None = None
        started = time.perf_counter()
        try:
            work(mine, writer)
            writer.close(len(mine))
        except LfbError as error:
            writer.abort()
            failure = error
        except BaseException:  # SIGINT / SIGTERM (lfbtool.runtime.stopping), an internal error: no temporary left
            writer.abort()
            raise
        seconds = time.perf_counter() - started
        dist.agree(ctx, failure, f" (finished segments kept in {parts.directory}; fix and rerun with --resume)")
        counts = dist.all_gather(ctx, (len(mine), seconds))
        run.produced = sum(count for count, _ in counts)
        run.seconds = max(s for _, s in counts)
        if assemble is not None:
            run.assembled = on_main(ctx, lambda: assemble(parts), share=False)
        return run
    finally:
        if lock is not None and ctx.is_main:
            lock.release()
