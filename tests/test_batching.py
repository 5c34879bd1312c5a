"""Decode once: keyframe clips of a long-GOP video, read through the per-video chunk sampler with
0, 1 and 4 DataLoader workers, decode at most 5 % more frames than the clips span."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, get_worker_info

from lfbtool.data.ava import Keyframe
from lfbtool.data.batching import (
    InOrder,
    KeyframeChunks,
    VideoChunkSampler,
    collate_clips,
    plan_batches,
    video_lanes,
    worker_schedule,
)
from lfbtool.data.clips import ClipSettings, KeyframeClips
from lfbtool.data.sampling import keyframe_clip_numbers
from lfbtool.testing.synthetic import synthetic_frames, write_video

from .extract_runs import child_env, free_port

FPS, SECONDS, VIDEOS = 30, 12, ("a", "b", "c")
DIST_SCRIPT = Path(__file__).with_name("dist_sampler.py")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("gop")
    frames = synthetic_frames(FPS * SECONDS, 64, 96, seed=11)
    first = write_video(root / "a.mp4", frames, FPS, lossless=False, gop=250)  # B-frames, one seek point
    for name in VIDEOS[1:]:
        shutil.copy(first, root / f"{name}.mp4")
    return root


def _settings(root: Path, clip_len: int, interval: int) -> ClipSettings:
    return ClipSettings(frames_root=None, videos_root=root, frame_template="img_{:05d}.jpg", video_ext="mp4",
                        fps=FPS, timestamp_start=0, start_index=1, clip_len=clip_len, frame_interval=interval,
                        short_side=32)


def _keyframes() -> list[Keyframe]:
    box = np.array([[0.1, 0.1, 0.6, 0.9]], dtype=np.float32)
    return [Keyframe(v, t, box, np.ones(1, dtype=np.float32)) for v in VIDEOS for t in range(1, SECONDS)]


def _spanned(keyframes: list[Keyframe], settings: ClipSettings, total: int) -> int:
    """Frames covered by the union of the clips' [first, last] ranges, per video, summed."""
    covered = set()
    for k in keyframes:
        numbers = keyframe_clip_numbers(k.timestamp, fps=FPS, timestamp_start=0, start_index=1,
                                        clip_len=settings.clip_len, interval=settings.frame_interval, total=total)
        covered.update((k.video_id, n) for n in range(int(numbers.min()), int(numbers.max()) + 1))
    return len(covered)


class _Counting(KeyframeChunks):
    """Each chunk also reports its worker and the frames its videos' readers decoded so far."""

    def __getitem__(self, chunk):
        items = super().__getitem__(chunk)
        info = get_worker_info()
        decoded = {vid: src.frames_decoded for vid, src in self.dataset._sources.items()}
        return {"worker": -1 if info is None else info.id, "chunk": chunk, "items": items, "decoded": decoded}


@pytest.mark.parametrize("clip", [(4, 16), (32, 2)], ids=["4x16", "32x2"])
@pytest.mark.parametrize("workers", [0, 1, 4])
def test_keyframe_order_decodes_each_frame_once(videos, clip, workers):
    settings = _settings(videos, *clip)
    keyframes = _keyframes()
    dataset = KeyframeClips(keyframes, settings)
    sampler = VideoChunkSampler([k.video_id for k in keyframes], num_workers=workers, chunk_size=2)
    loader = DataLoader(_Counting(dataset), sampler=sampler, batch_size=None, num_workers=workers,
                        prefetch_factor=2 if workers else None, timeout=120 if workers else 0)
    decoded: dict[tuple[int, str], int] = {}
    order = InOrder()
    received = []
    for out in loader:
        if out["chunk"]:
            assert out["worker"] == (-1 if workers == 0 else sampler.schedule.index(tuple(out["chunk"])) % workers)
        for (vid, count) in out["decoded"].items():
            decoded[out["worker"], vid] = max(count, decoded.get((out["worker"], vid), 0))
        for item in out["items"]:
            assert "error" not in item, item.get("error")
            received.extend(order.push(item["index"], item["index"]))
    assert received == list(range(len(keyframes))) and len(order) == 0
    workers_per_video = {vid: {w for w, v in decoded if v == vid} for vid in VIDEOS}
    assert all(len(ws) == 1 for ws in workers_per_video.values()), workers_per_video  # one decoder per video
    spanned = _spanned(keyframes, settings, FPS * SECONDS)
    ratio = sum(decoded.values()) / spanned
    assert spanned > 0.9 * len(VIDEOS) * FPS * SECONDS
    assert ratio <= 1.05, (ratio, decoded, spanned)


def test_one_clip_per_fresh_reader_decodes_much_more(videos):
    """The same reads, each from a fresh reader (a seek per clip), decode far more than the span:
    the count the other test bounds is a real measurement, not a constant."""
    settings = _settings(videos, 4, 16)
    keyframes = [k for k in _keyframes() if k.video_id == "a"]
    total = 0
    for i in range(len(keyframes)):
        dataset = KeyframeClips(keyframes, settings)
        dataset.load(i)
        total += dataset._sources["a"].frames_decoded
    assert total / _spanned(keyframes, settings, FPS * SECONDS) > 3


def test_video_lanes_split_runs_evenly():
    ids = ["a"] * 5 + ["b"] * 2 + ["c"]
    assert video_lanes(ids, 2) == [range(0, 2), range(2, 4), range(4, 5), range(5, 7), range(7, 8)]
    assert video_lanes(ids, 3) == [range(0, 3), range(3, 5), range(5, 7), range(7, 8)]
    assert video_lanes([], 3) == []


def test_worker_schedule_keeps_each_lane_on_one_worker():
    lanes = [range(0, 5), range(5, 7), range(7, 8)]
    schedule = worker_schedule(lanes, 2, chunk_size=2)
    # worker 0 (even places): lane 0 in order; worker 1: lane 1, then lane 2, then no-ops
    assert schedule == [(0, 1), (5, 6), (2, 3), (7,), (4,)]
    assert worker_schedule(lanes, 0, chunk_size=3) == [(0, 1, 2), (3, 4), (5, 6), (7,)]
    flat = [i for chunk in worker_schedule(lanes, 4, chunk_size=1) for i in chunk]
    assert sorted(flat) == list(range(8))


def _batches_of(plan, mine: set[int] | None = None) -> dict[int, tuple[int, ...]]:
    """Each computed position -> its batch as positions of the whole list (only those in ``mine``)."""
    found = {}
    for lane in plan.lanes:
        for chunk in lane:
            batch = tuple(plan.compute[i] for i in chunk)
            for position in batch:
                if mine is None or position in mine:
                    found[position] = batch
    return found


def test_plan_batches_picks_whole_batches_of_the_whole_list():
    ids = ["a"] * 5 + ["b"] * 2 + ["c"]  # lanes of at most 3: [0, 3) [3, 5) [5, 7) [7, 8)
    whole = plan_batches(ids, range(8), 2, lane_keyframes=3)
    assert whole.compute == list(range(8)) and all(whole.write)
    assert whole.lanes == [[(0, 1), (2,)], [(3, 4)], [(5, 6)], [(7,)]]
    part = plan_batches(ids, [2, 3, 6], 2, lane_keyframes=3)  # a resume, or a rank's block
    assert part.compute == [2, 3, 4, 5, 6]
    assert part.write == [True, True, False, False, True]
    assert part.lanes == [[(0,)], [(1, 2)], [(3, 4)]]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_every_keyframe_is_computed_in_the_batch_of_an_uninterrupted_run(batch_size):
    """Whatever was stored before (a resume) and however the rest is split over ranks, each keyframe a
    rank writes sits in the batch the one-process run gives it, and is written by exactly one rank."""
    rng = np.random.default_rng(0)
    ids = sorted(rng.choice(["a", "b", "c", "d"], size=40).tolist())
    reference = _batches_of(plan_batches(ids, range(len(ids)), batch_size, lane_keyframes=7))
    for _ in range(20):
        done = set(rng.choice(len(ids), size=int(rng.integers(0, 30)), replace=False).tolist())
        todo = [i for i in range(len(ids)) if i not in done]
        ranks = int(rng.integers(1, 4))
        written = []
        for block in np.array_split(np.array(todo, dtype=int), ranks):
            plan = plan_batches(ids, block.tolist(), batch_size, lane_keyframes=7)
            mine = set(block.tolist())
            assert _batches_of(plan, mine) == {i: reference[i] for i in mine}
            written += [position for position, write in zip(plan.compute, plan.write, strict=True) if write]
        assert written == todo


def test_collate_clips_batches_runs_of_one_shape():
    def item(index, shape, boxes):
        return {"index": index, "clip": torch.full((3, 2, *shape), index, dtype=torch.uint8),
                "boxes": torch.tensor(boxes, dtype=torch.float32)}

    items = [item(0, (4, 6), [[1, 2, 3, 4]]), item(1, (4, 6), [[5, 6, 7, 8], [0, 0, 2, 2]]),
             {"index": 2, "error": "bad frame", "exit_code": 2}, item(3, (4, 6), [[1, 1, 2, 2]]),
             item(4, (6, 4), [[2, 2, 3, 3]])]
    batches = collate_clips(items)
    assert [b.get("indices", b.get("index")) for b in batches] == [[0, 1], 2, [3], [4]]
    assert batches[0]["clips"].shape == (2, 3, 2, 4, 6) and torch.equal(batches[0]["clips"][1], items[1]["clip"])
    assert torch.equal(batches[0]["rois"], torch.tensor([[0, 1, 2, 3, 4], [1, 5, 6, 7, 8], [1, 0, 0, 2, 2]],
                                                        dtype=torch.float32))
    assert batches[1]["error"] == "bad frame"
    assert torch.equal(batches[3]["rois"], torch.tensor([[0, 2, 2, 3, 3]], dtype=torch.float32))


def test_in_order_releases_by_index():
    order = InOrder()
    assert order.push(1, "b") == [] and len(order) == 1
    assert order.push(0, "a") == ["a", "b"]
    assert order.push(2, "c") == ["c"]
    with pytest.raises(ValueError, match="arrived twice"):
        order.push(2, "c")


def test_sampler_under_torchrun(tmp_path):
    """2 gloo ranks: each builds the sampler for its contiguous block; no range is decoded twice."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--master-port={free_port()}", str(DIST_SCRIPT), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=child_env())
    assert done.returncode == 0, done.stderr[-3000:]
    blocks = sorted(tmp_path.glob("rank*.txt"))
    assert [p.name for p in blocks] == ["rank0.txt", "rank1.txt"]
    seen = [line for p in blocks for line in p.read_text().splitlines()]
    assert sorted(int(line.split()[0]) for line in seen) == list(range(40))  # every keyframe once
