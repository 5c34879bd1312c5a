"""Run under torchrun (tests/test_batching.py): each rank builds the chunk sampler for its contiguous
block of keyframes and checks that its 4 workers' ranges of each video are disjoint and contiguous.
Writes ``OUT/rank{r}.txt``: one line ``global_index worker`` per keyframe it scheduled."""

from __future__ import annotations

import sys
from pathlib import Path

from lfbtool.data.batching import VideoChunkSampler
from lfbtool.runtime import distributed as dist

WORKERS = 4


def main(out: Path) -> None:
    ctx = dist.init_from_env(120)
    video_ids = ["a"] * 15 + ["b"] * 17 + ["c"] * 8
    block = dist.contiguous_block(len(video_ids), ctx.world_size, ctx.rank)
    mine = [video_ids[i] for i in block]
    sampler = VideoChunkSampler(mine, num_workers=WORKERS, chunk_size=2, lane_keyframes=4)
    owner: dict[int, int] = {}
    order: dict[int, list[int]] = {}
    lines = []
    for place, chunk in enumerate(sampler):
        worker = place % WORKERS
        for index in chunk:
            assert index not in owner, f"keyframe {index} scheduled twice"
            owner[index] = worker
            order.setdefault(worker, []).append(index)
            lines.append(f"{block.start + index} {worker}")
    assert sorted(owner) == list(range(len(mine)))
    assert all(len(set(mine[i] for i in lane)) == 1 for lane in sampler.lanes)  # a lane is one video
    assert all(len({owner[i] for i in lane}) == 1 for lane in sampler.lanes)  # ... and one worker's
    assert all(indices == sorted(indices) for indices in order.values())  # each worker moves forward
    assert len(sampler.lanes) > WORKERS  # workers took several lanes each
    starts = dist.all_gather(ctx, (block.start, block.stop))
    assert all(a[1] == b[0] for a, b in zip(starts, starts[1:], strict=False)), starts
    (out / f"rank{ctx.rank}.txt").write_text("\n".join(lines) + "\n")
    dist.shutdown(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
