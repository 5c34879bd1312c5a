"""Work for the extraction DataLoader's workers: contiguous runs of one video each, decoded once.

A map-style DataLoader sends item ``p`` of its sampler to worker ``p % W`` and returns the items in
sampler order. Giving keyframes out one by one, round robin, makes every worker decode (almost)
every frame of every video: each gets every W-th keyframe and seeks or decodes forward over the
others'. Here the sampler's items are *chunks*, tuples of up to ``chunk_size`` consecutive
keyframes of one video, and the schedule is built so that the chunks worker ``w`` receives are
consecutive pieces of one *lane*: a contiguous run of at most ``lane_keyframes`` keyframes of one
video. No two workers decode the same range; a worker without a lane left gets an empty chunk
(``()``, a no-op) so the round robin stays aligned.

The price is order: the main loop receives the lanes interleaved. The clips are batched and run
through the model as they come; only the (small) features wait in :class:`InOrder` until every
earlier keyframe is done, so the writer still appends keys in sorted order. The wait is bounded:
at most ``(W - 1) * lane_keyframes`` keyframes' features are held. With 0 or 1 workers the schedule
is the keyframe order itself and nothing waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["BatchPlan", "InOrder", "KeyframeChunks", "VideoChunkSampler", "collate_clips", "plan_batches", "schedule_chunks",
           "video_lanes", "worker_schedule"]

#: Keyframes per lane: a lane's first clip costs one seek (up to a GOP of frames decoded twice);
#: 256 keyframes at 30 fps span 7680 frames, so a 250-frame GOP adds at most ~3.3 %.
LANE_KEYFRAMES = 256


def video_lanes(video_ids: Sequence[str], lane_keyframes: int = LANE_KEYFRAMES) -> list[range]:
    """Runs of equal consecutive ``video_ids``, each split into near-equal ranges of at most
    ``lane_keyframes`` positions; together they cover ``range(len(video_ids))`` in order."""
    if lane_keyframes < 1:
        raise ValueError(f"lane_keyframes must be >= 1, got {lane_keyframes}")
    lanes: list[range] = []
    start = 0
    for end in range(1, len(video_ids) + 1):
        if end < len(video_ids) and video_ids[end] == video_ids[start]:
            continue
        pieces = -(-(end - start) // lane_keyframes)
        base, extra = divmod(end - start, pieces)
        for piece in range(pieces):
            size = base + (1 if piece < extra else 0)
            lanes.append(range(start, start + size))
            start += size
    return lanes


def worker_schedule(lanes: Sequence[range], num_workers: int, chunk_size: int) -> list[tuple[int, ...]]:
    """Sampler items such that item ``p`` (which goes to worker ``p % W``) continues that worker's lane.

    A worker takes the next lane (in order) when its own is done; with none left it gets ``()``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return schedule_chunks([[tuple(lane[i:i + chunk_size]) for i in range(0, len(lane), chunk_size)] for lane in lanes],
                           num_workers)


def schedule_chunks(lanes: Sequence[Sequence[tuple[int, ...]]], num_workers: int) -> list[tuple[int, ...]]:
    """:func:`worker_schedule` for lanes already cut into chunks."""
    workers = max(1, num_workers)
    queues: list[deque[tuple[int, ...]]] = [deque() for _ in range(workers)]
    waiting = deque(lanes)
    schedule: list[tuple[int, ...]] = []
    while waiting or any(queues):
        for queue in queues:
            if not queue and waiting:
                queue.extend(waiting.popleft())
            schedule.append(queue.popleft() if queue else ())
    while schedule and not schedule[-1]:
        schedule.pop()
    return schedule


@dataclass(frozen=True)
class BatchPlan:
    """One rank's share of a run as model batches that depend on the whole keyframe list only.

    A keyframe's features can differ in the last bit with the batch it is computed in (CPU kernels
    block by batch size), so a resumed run, or a rank whose block starts inside a batch, computes each
    keyframe in exactly the batch an uninterrupted one-process run puts it in: the whole batch,
    rows of keyframes it must not write (stored already, or another rank's) computed and dropped.
    """

    compute: list[int]  # positions in the whole keyframe list, ascending
    lanes: list[list[tuple[int, ...]]]  # the batches, as indices into ``compute``, grouped by lane
    write: list[bool]  # per entry of ``compute``: this rank writes its rows


def plan_batches(video_ids: Sequence[str], mine: Sequence[int], batch_size: int,
                 lane_keyframes: int = LANE_KEYFRAMES) -> BatchPlan:
    """The batches holding any of ``mine`` (positions in ``video_ids``, the run's whole keyframe list):
    each lane of the whole list (:func:`video_lanes`) cut into ``batch_size`` pieces from its start."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    wanted = set(mine)
    compute: list[int] = []
    lanes: list[list[tuple[int, ...]]] = []
    for lane in video_lanes(video_ids, lane_keyframes):
        chunks = []
        for start in range(lane.start, lane.stop, batch_size):
            batch = range(start, min(start + batch_size, lane.stop))
            if any(i in wanted for i in batch):
                chunks.append(tuple(range(len(compute), len(compute) + len(batch))))
                compute.extend(batch)
        if chunks:
            lanes.append(chunks)
    return BatchPlan(compute, lanes, [i in wanted for i in compute])


class VideoChunkSampler(Sampler[tuple[int, ...]]):
    """Chunks of consecutive keyframes of one video, scheduled per DataLoader worker (see the module).

    ``video_ids[i]`` is the video of dataset item ``i`` (a rank's block, sorted by video and time);
    ``num_workers`` must be the DataLoader's, ``chunk_size`` is best the batch size.
    """

    def __init__(self, video_ids: Sequence[str], *, num_workers: int, chunk_size: int,
                 lane_keyframes: int = LANE_KEYFRAMES) -> None:
        self.num_workers = num_workers
        self.lanes = video_lanes(video_ids, lane_keyframes)
        self.schedule = worker_schedule(self.lanes, num_workers, chunk_size)

    @classmethod
    def of_plan(cls, plan: BatchPlan, *, num_workers: int) -> VideoChunkSampler:
        """Items are the plan's batches, each lane's on one worker."""
        sampler = cls.__new__(cls)
        sampler.num_workers = num_workers
        sampler.lanes = [range(lane[0][0], lane[-1][-1] + 1) for lane in plan.lanes]
        sampler.schedule = schedule_chunks(plan.lanes, num_workers)
        return sampler

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return iter(self.schedule)

    def __len__(self) -> int:
        return len(self.schedule)


class KeyframeChunks(Dataset):
    """Item ``chunk`` (a tuple of indices): ``collate([dataset[i] for i in chunk])`` (default: the list)."""

    def __init__(self, dataset: Dataset, collate: Callable[[list[Any]], Any] | None = None) -> None:
        self.dataset = dataset
        self.collate = collate

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, chunk: tuple[int, ...]) -> Any:
        items = [self.dataset[index] for index in chunk]
        return items if self.collate is None else self.collate(items)


def collate_clips(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``KeyframeClips`` items -> model batches, built in the worker so the DataLoader pins them whole.

    Consecutive items of one clip shape become ``{"indices": [i, ...], "clips": uint8 [B, 3, T, h, w],
    "rois": float32 [R, 5]}`` (rows ``(batch index, x1, y1, x2, y2)``, the model's input); an error
    item is passed on as it is, in its place.
    """
    batches: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []

    def flush() -> None:
        if group:
            rois = [torch.cat([torch.full((len(item["boxes"]), 1), float(i)), item["boxes"].float()], dim=1)
                    for i, item in enumerate(group)]
            batches.append({"indices": [item["index"] for item in group],
                            "clips": torch.stack([item["clip"] for item in group]), "rois": torch.cat(rois)})
            group.clear()

    for item in items:
        if "error" in item or (group and group[0]["clip"].shape != item["clip"].shape):
            flush()
        if "error" in item:
            batches.append(item)
        else:
            group.append(item)
    flush()
    return batches


class InOrder:
    """Reassembles results that arrive out of order: ``push(i, value)`` returns every value now
    ready in index order (``start``, ``start + 1``, ...); nothing is returned twice."""

    def __init__(self, start: int = 0) -> None:
        self.next = start
        self.waiting: dict[int, Any] = {}

    def push(self, index: int, value: Any) -> list[Any]:
        if index < self.next or index in self.waiting:
            raise ValueError(f"result {index} arrived twice")
        self.waiting[index] = value
        ready = []
        while self.next in self.waiting:
            ready.append(self.waiting.pop(self.next))
            self.next += 1
        return ready

    def __len__(self) -> int:
        """Results held back, waiting for an earlier one."""
        return len(self.waiting)
