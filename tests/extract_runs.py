"""Helpers for the distributed / resume tests: launch torchrun, read banks and segments, compare banks."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

CRASH_RUNNER = Path(__file__).with_name("crash_runner.py")
DATASETS = ("videos", "video_key_offsets", "timestamps", "key_row_offsets", "features", "boxes", "scores")
Key = tuple[str, int]


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, *, timeout: float = 300) -> None:
    """Return once ``ready()`` holds while ``proc`` still runs (it waits at a pause the test set up).
    A hang guard, not a speed check: the test fails with the process's output when the process ends
    first or nothing happens in ``timeout`` seconds (then the process is killed to read its output)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is None and time.monotonic() > deadline:
            proc.kill()
        if proc.poll() is not None:
            pytest.fail(f"{what} never happened (exit {proc.wait()}): {proc.communicate()}")
        time.sleep(0.05)


def child_env(**extra: str) -> dict[str, str]:
    """One thread per process (2 shared cores), and gloo even where CUDA exists (what the tests cover)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_command(launcher: list[str], args: list[str], *, crash: bool = False) -> list[str]:
    target = [str(CRASH_RUNNER)] if crash else ["-m", "lfbtool"]
    return [sys.executable, "-m", "torch.distributed.run", *launcher, *target, *args]


def run(command: list[str], *, timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env(**env))


def two_nodes(args_per_node: list[list[str]], *, nproc: int, timeout: int = 240) -> list[subprocess.CompletedProcess]:
    """Two torchrun launchers started together on this machine (static rendezvous on 127.0.0.1)."""
    port = str(free_port())
    procs = []
    for node, args in enumerate(args_per_node):
        launcher = ["--nnodes", "2", "--node_rank", str(node), f"--nproc_per_node={nproc}",
                    "--master_addr", "127.0.0.1", "--master_port", port]
        procs.append(subprocess.Popen(torchrun_command(launcher, args), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=child_env()))
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def expected_keys(example) -> list[Key]:
    """The keyframes the tiny dataset must give, from how it was made: every annotated (video, second)
    except the excluded one and the one without proposals (skipped: no whole-frame fallback)."""
    keys = {(v, t) for v in example.video_ids for t in example.timestamps}
    return sorted(keys - {example.excluded_key, example.no_proposals_key})


def read_bank(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {name: handle[name][()] for name in DATASETS}


def bank_keys(path: Path) -> list[Key]:
    bank = read_bank(path)
    videos = [v.decode() if isinstance(v, bytes) else str(v) for v in bank["videos"]]
    offsets = bank["video_key_offsets"]
    return [(videos[v], int(t)) for v in range(len(videos)) for t in bank["timestamps"][offsets[v]:offsets[v + 1]]]


def assert_same_bank(expected: Path, actual: Path) -> None:
    """Same keys and rows; features bitwise equal (raw fp16), boxes and scores equal (NaN-aware)."""
    a, b = read_bank(expected), read_bank(actual)
    assert bank_keys(expected) == bank_keys(actual)
    for name in DATASETS:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        if name == "features":
            assert a[name].tobytes() == b[name].tobytes(), "features differ bitwise"
        else:
            assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


def segments(shards: Path) -> dict[str, list[Key]]:
    """Keys of every finished segment in a shards directory, by file name."""
    pattern = re.compile(r"^\w+-a\d{3}-r\d{5}-s\d{6}\.h5$")
    return {p.name: bank_keys(p) for p in sorted(shards.iterdir()) if pattern.match(p.name)}


def summary_counts(stdout: str) -> tuple[int, int, int]:
    """(keyframes, extracted now, resumed) from the extract summary rank 0 prints."""
    found = re.search(r"keyframes\s+(\d+) \((\d+) extracted now, (\d+) resumed\)", stdout)
    assert found, stdout
    return int(found[1]), int(found[2]), int(found[3])
