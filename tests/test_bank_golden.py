"""Golden bank: what a tiny extraction stores, recorded before the bank-layout refactor (issue 8).

Only what is exact on every CPU is held as bytes: boxes and scores (copied from the proposals), and
the index (videos, offsets, timestamps; recorded as values in issue 16), none of which passes through
a float kernel. A refactor that
changes one of them (order, dtype, rounding) fails here. Features come from CPU kernels, and oneDNN
picks other ones on AVX2, AVX-512 or AMX, with other last bits; so they are compared with the
functional reference of tests/reference.py computed in this run, to within fp16 rounding.
"""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import torch

from tests.test_extract_e2e import expected_keyframes, read_bank, reference_features

# sha256 of the raw bytes, recorded before `bank/layout`, `bank/attempts` and the fletcher32 checksums existed
GOLDEN_SHA256 = {
    "boxes": "950877d95fedf8f1f77db339b1278a968e62ebf8cb821c6bfe00ed1a03eefd38",
    "scores": "e3fc4644b5d53afa6617b7f0f83347b325eac1e4bc7510262744526661498a92",
    "timestamps": "71391f199c6e10728206841871d6a7e282f121c75a2fd3ae2be5c9fdec07d082",
}
# the index of the same bank: dtype and values
INDEX = {
    "videos": (np.dtype(object), [b"vid_a", b"vid_b", b"vid_c"]),
    "video_key_offsets": (np.dtype(np.int64), [0, 3, 5, 7]),
    "timestamps": (np.dtype(np.int32), [902, 903, 904, 902, 903, 902, 903]),
    "key_row_offsets": (np.dtype(np.int64), [0, 3, 4, 6, 9, 10, 12, 13]),
}
# fp16 keeps 11 significant bits: a stored value is within one fp16 step (2**-10 relative) of the fp32
# reference even where another CPU's last-bit noise moves the rounding; two steps allowed, and an
# absolute 1e-3 for values near zero (features are >= 0, of order 1-20). A wrong frame, box, resize or
# normalization moves features by far more.
RTOL, ATOL = 2 * 2**-10, 1e-3


def test_exact_datasets_match_the_recorded_golden(half_bank):
    with h5py.File(half_bank.bank, "r") as handle:
        found = {name: hashlib.sha256(handle[name][()].tobytes()).hexdigest() for name in GOLDEN_SHA256}
        index = {name: (handle[name].dtype, handle[name][()].tolist()) for name in INDEX}
        features = handle["features"]
        assert features.dtype == np.float16 and features.shape == (13, 2048)
    assert found == GOLDEN_SHA256
    assert index == INDEX


def test_features_match_the_functional_reference_within_fp16_rounding(tiny_data, half_bank):
    torch.set_num_threads(1)
    raw = torch.load(tiny_data.checkpoint, weights_only=True)["state_dict"]
    state = {k.removeprefix("backbone."): v for k, v in raw.items() if k.startswith("backbone.")}
    bank = read_bank(half_bank.bank)
    assert list(bank) == sorted(expected_keyframes(tiny_data.example))
    for (video_id, timestamp), stored in bank.items():
        reference = reference_features(tiny_data.example, state, video_id, timestamp, stored["boxes"])
        np.testing.assert_allclose(stored["features"].astype(np.float32), reference.numpy(), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{video_id},{timestamp}")
