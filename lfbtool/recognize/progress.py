"""recognize's progress bar under torchrun: shown by rank 0, counting the whole run's inputs.

Rank 0 cannot see the other ranks' loops without a collective per input (which would make every
rank wait for the slowest at each step). Instead every rank shares its share's size once, at the
start (one ``all_gather``), and rank 0 shows its own progress scaled to the run:
``done_0 * total / share_0``. The contiguous split gives ranks equal shares (at most one apart), so
the bar and its ETA track the whole run, and reach the total exactly when rank 0 finishes its share.
"""

from __future__ import annotations

from types import TracebackType

from lfbtool.runtime.console import progress_bar
from lfbtool.runtime.distributed import DistContext, all_gather

__all__ = ["RankProgress", "shown_count"]


def shown_count(done: int, share: int, total: int) -> int:
    """Inputs the bar shows when rank 0 has done ``done`` of its ``share`` and all ranks have ``total``."""
    if share <= 0:
        return total
    return min(total, round(done * total / share))


class RankProgress:
    """``with RankProgress(ctx, len(mine), enabled=...) as p: ... p.advance()``; every rank constructs
    it (the shares are gathered there); only rank 0 with ``enabled`` draws."""

    def __init__(self, ctx: DistContext, share: int, *, enabled: bool) -> None:
        self.share = share
        self.total = sum(all_gather(ctx, share)) if ctx.world_size > 1 else share
        self.done = 0
        self._bar = progress_bar("inputs", enabled and ctx.is_main)
        self._task = self._bar.add_task("recognize", total=self.total, rate="")

    def __enter__(self) -> RankProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._bar.__exit__(kind, error, trace)

    def advance(self) -> None:
        self.done += 1
        speed = self._bar.tasks[0].speed
        self._bar.update(self._task, completed=shown_count(self.done, self.share, self.total),
                         rate=f"{speed:.2f} inputs/s" if speed else "")
