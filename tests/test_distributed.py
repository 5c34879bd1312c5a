"""torchrun (gloo): 2 processes, and 2 "nodes" x 2 processes on localhost, give the single-process bank.

Every extraction runs in fresh processes with one thread each, as a user would run it.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lfbtool.bank.verify import check_bank
from lfbtool.runtime.distributed import contiguous_block
from tests.conftest import SEGMENT, run_lfbtool
from tests.extract_runs import (
    assert_same_bank,
    expected_keys,
    run,
    segments,
    summary_counts,
    torchrun_command,
    two_nodes,
)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7, 9])
def test_contiguous_blocks_cover_every_item_once(world: int) -> None:
    for count in range(0, 12):
        blocks = [contiguous_block(count, world, rank) for rank in range(world)]
        assert [i for block in blocks for i in block] == list(range(count))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_torchrun_two_processes_match_single_process(tiny_data, reference, tmp_path) -> None:
    out = tmp_path / "out"
    done = run(torchrun_command(["--standalone", "--nproc_per_node=2"],
                                tiny_data.extract_args(out, *SEGMENT, "--keep-shards")))
    assert done.returncode == 0, done.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    check_bank(out / "lfb_train.h5")
    keys = expected_keys(tiny_data.example)
    # each rank wrote its own segments: contiguous, unpadded blocks of the sorted keys, in rank order
    found = segments(out / "shards")
    per_rank = [[k for name, seg in found.items() if f"-r0000{r}-" in name for k in seg] for r in (0, 1)]
    assert per_rank[0] + per_rank[1] == keys
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1
    manifests = [json.loads((out / "shards" / f"train-a001-r0000{r}.json").read_text()) for r in (0, 1)]
    assert [m["keyframes"] for m in manifests] == [len(k) for k in per_rank]
    # only rank 0 prints the summary
    assert len(re.findall(r"^keyframes ", done.stdout, re.M)) == 1 and "processes  2" in done.stdout
    assert summary_counts(done.stdout) == (len(keys), len(keys), 0)


def test_an_error_under_torchrun_is_printed_once(tiny_data, reference, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "lfb_train.h5").write_bytes(b"left by an earlier run")
    done = run(torchrun_command(["--standalone", "--nproc_per_node=2"], tiny_data.extract_args(out, *SEGMENT)))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "--resume" in errors[0] and "--overwrite" in errors[0] and str(out) in errors[0]


def test_two_nodes_on_localhost_match_single_process(tiny_data, reference, tmp_path) -> None:
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, *SEGMENT)
    node0, node1 = two_nodes([args, args], nproc=2)
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, node1.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    assert "processes  4" in node0.stdout and node1.stdout == ""  # ranks 2 and 3 print nothing
    assert not (out / "shards").exists()  # merged, then deleted


def test_rank_that_cannot_see_shared_output_stops_the_run(tiny_data, tmp_path) -> None:
    """Two nodes whose OUT are different directories: as if OUT were not on a shared filesystem."""
    node0, node1 = two_nodes([tiny_data.extract_args(tmp_path / f"node{n}", *SEGMENT) for n in (0, 1)], nproc=1)
    assert node0.returncode != 0 and node1.returncode != 0
    for node in (node0, node1):
        assert "rank 1 on " in node.stderr and "cannot see the files rank 0 wrote" in node.stderr
        assert "filesystem shared by all nodes" in node.stderr
    assert not list(tmp_path.rglob("*.h5"))


def test_no_merge_leaves_shards_for_lfbtool_merge(tiny_data, reference, no_merge_run, tmp_path) -> None:
    assert not (no_merge_run.out / "lfb_train.h5").exists()
    out = tmp_path / "out"
    shutil.copytree(no_merge_run.out, out)  # the session's `extract --no-merge` (segments of 2), merged here
    found = segments(out / "shards")
    assert [k for seg in found.values() for k in seg] == expected_keys(tiny_data.example)
    assert all(len(seg) <= 2 for seg in found.values())
    merged = run_lfbtool(["merge", str(out), "--mode", "train"])
    assert merged.returncode == 0, merged.stderr
    assert_same_bank(reference, out / "lfb_train.h5")
    assert not (out / "shards").exists()
