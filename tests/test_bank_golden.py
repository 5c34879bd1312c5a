"""Golden bank: the raw bytes of a tiny extraction, recorded before the bank-layout refactor (issue 8).

The sha256 values below were computed from a run of the code as it was before `bank/layout`,
`bank/attempts` and the fletcher32 checksums existed; a refactor that changes one stored value (order,
dtype, rounding) changes a hash. One thread and batch 1: CPU conv results depend on the thread count.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import h5py

from tests.extract_runs import child_env

GOLDEN = {
    "features": "0ab6b62df7fe51f2513a79dd0bd64c37ef8016de89f2c9c28eb3449b70736637",
    "boxes": "950877d95fedf8f1f77db339b1278a968e62ebf8cb821c6bfe00ed1a03eefd38",
    "scores": "e3fc4644b5d53afa6617b7f0f83347b325eac1e4bc7510262744526661498a92",
    "timestamps": "71391f199c6e10728206841871d6a7e282f121c75a2fd3ae2be5c9fdec07d082",
}


def test_bank_bytes_match_the_recorded_golden_hashes(tiny_data, tmp_path):
    out = tmp_path / "out"
    args = tiny_data.extract_args(out, "--batch-size", "1")
    done = subprocess.run([sys.executable, "-m", "lfbtool", *args], capture_output=True, text=True, timeout=300,
                          env=child_env(OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    with h5py.File(out / "lfb_train.h5", "r") as handle:
        found = {name: hashlib.sha256(handle[name][()].tobytes()).hexdigest() for name in GOLDEN}
    assert found == GOLDEN
