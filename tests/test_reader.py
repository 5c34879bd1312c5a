"""FeatureBank: lookups, errors, several banks, pickling into DataLoader workers, window sampling."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lfbtool.bank.reader import BankEntry, FeatureBank
from lfbtool.bank.writer import BankWriter
from lfbtool.errors import LfbError

C = 8


def write_bank(
    path: Path, counts: dict[tuple[str, int], int], *, dtype: str = "float16", seed: int = 0, mode: str = "train"
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A bank with ``counts[key]`` rows per key; returns the rows written, per key, for references."""
    rng = np.random.default_rng(seed)
    written = {}
    with BankWriter(path, feature_dim=C, dtype=dtype, mode=mode) as writer:
        for key in sorted(counts):
            n = counts[key]
            feats = rng.standard_normal((n, C)).astype(dtype)
            boxes = rng.random((n, 4), dtype=np.float32)
            scores = rng.random(n, dtype=np.float32)
            writer.append(key[0], key[1], feats, boxes, scores)
            written[key] = (feats, boxes, scores)
    return written


# video "a": seconds 10..14, 16 (a key with no rows), 17, 18; 15 absent; 12 has 7 rows (> K=5), 17 has 6
A_COUNTS = {
    ("a", 10): 2, ("a", 11): 1, ("a", 12): 7, ("a", 13): 3, ("a", 14): 5, ("a", 16): 0, ("a", 17): 6, ("a", 18): 2,
}
COUNTS = {**A_COUNTS, ("b", 902): 3, ("b", 903): 1, ("-5KQ66BBWC4", 902): 2}


@pytest.fixture()
def bank_file(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "lfb_train.h5"
    return path, write_bank(path, COUNTS)


def test_lookups(bank_file: tuple[Path, dict]) -> None:
    path, written = bank_file
    bank = FeatureBank(path)
    assert bank.videos == ["-5KQ66BBWC4", "a", "b"]
    assert bank.timestamps("a").tolist() == [10, 11, 12, 13, 14, 16, 17, 18]
    assert len(bank) == len(COUNTS)
    assert list(bank) == sorted(COUNTS)
    assert bank.feature_dim == C and bank.dtype == torch.float16
    feats, boxes, scores = written[("b", 902)]
    assert bank["b", 902].dtype == torch.float16
    assert np.array_equal(bank["b", 902].numpy(), feats)
    assert np.array_equal(bank["b,0902"].numpy(), feats)
    entry = bank.get("b", 902, with_boxes=True)
    assert isinstance(entry, BankEntry)
    assert np.array_equal(entry.boxes.numpy(), boxes) and np.array_equal(entry.scores.numpy(), scores)
    assert ("b", 902) in bank and "b,0903" in bank and "a" in bank
    assert ("b", 904) not in bank and "zz,0001" not in bank and "zz" not in bank
    rows = bank.read_video("a")
    assert rows.timestamps.tolist() == [10, 11, 12, 13, 14, 16, 17, 18]
    assert bank["a", 16].shape == (0, C)
    assert np.array_equal(rows.features[rows.row_offsets[2] : rows.row_offsets[3]].numpy(), written[("a", 12)][0])


def test_unknown_keys_name_the_key(bank_file: tuple[Path, dict]) -> None:
    path, _ = bank_file
    bank = FeatureBank(path)
    with pytest.raises(KeyError, match=r"b,0904.*lfb_train\.h5"):
        bank["b", 904]
    with pytest.raises(KeyError, match=r"zz,0902.*'zz'"):
        bank["zz,0902"]
    with pytest.raises(KeyError, match="'zz'"):
        bank.sample_window("zz", 902)
    with pytest.raises(KeyError, match="not a bank key"):
        bank["nonsense"]
    with pytest.raises(LfbError):  # the same error is an LfbError, so the CLI prints one line
        bank.timestamps("zz")


def test_bad_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(LfbError, match="not an lfbtool bank"):
        FeatureBank(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(LfbError, match="not an lfbtool bank"):
        FeatureBank(other)
    newer = tmp_path / "lfb_new.h5"
    write_bank(newer, {("a", 1): 1})
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(LfbError, match="format_version 3 is newer"):
        FeatureBank(newer)
    with pytest.raises(LfbError, match="no such bank file"):
        FeatureBank(tmp_path / "missing.h5")
    damaged = tmp_path / "lfb_damaged.h5"
    write_bank(damaged, {("a", 1): 1, ("a", 2): 2})
    with h5py.File(damaged, "r+") as f:
        f["timestamps"][1] = 0
    with pytest.raises(LfbError, match="timestamps must strictly increase within a video"):
        FeatureBank(damaged)


def test_several_banks(tmp_path: Path) -> None:
    train, val = tmp_path / "lfb_train.h5", tmp_path / "lfb_val.h5"
    w_train = write_bank(train, {("a", 1): 2, ("c", 5): 1}, seed=1)
    w_val = write_bank(val, {("b", 3): 1}, seed=2, mode="val")
    bank = FeatureBank([train, val])
    assert bank.videos == ["a", "b", "c"] and len(bank) == 3
    assert np.array_equal(bank["b", 3].numpy(), w_val[("b", 3)][0])
    assert np.array_equal(bank["c", 5].numpy(), w_train[("c", 5)][0])
    clash = tmp_path / "lfb_clash.h5"
    write_bank(clash, {("a", 1): 1})
    with pytest.raises(LfbError, match=r"key a,0001 is also in .*lfb_train\.h5"):
        FeatureBank([train, clash])
    wide = tmp_path / "lfb_wide.h5"
    with BankWriter(wide, feature_dim=C + 1) as writer:
        writer.append("z", 1, np.zeros((1, C + 1)), np.zeros((1, 4)), np.zeros(1))
    with pytest.raises(LfbError, match="feature_dim 9 differs"):
        FeatureBank([train, wide])


def reference_window(
    rows: dict[int, torch.Tensor], timestamp: int, window_size: int, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """MMAction2 1.x ``LFB.sample_long_term_features`` on a {second: tensor[n, C]} dict, written out."""
    start = timestamp - window_size // 2
    out = torch.zeros(window_size, k, C)
    for idx, sec in enumerate(range(start, start + window_size)):
        if sec in rows:
            feat = rows[sec]
            chosen = torch.randperm(feat.shape[0], generator=generator)[:k]
            out[idx, : feat.shape[0]] = feat[chosen]
    return out.reshape(-1, C)


@pytest.mark.parametrize(
    ("timestamp", "window_size", "k"),
    [
        (11, 6, 5),  # starts before the video's first second (8, 9 absent) and holds 12 (7 rows > K)
        (17, 6, 5),  # runs past the end: 19 absent; holds 17 (6 rows > K), absent 15 and empty 16
        (14, 4, 2),  # 12..15: absent 15 only zeros; every present second has at least K=2
        (40, 10, 5),  # no second of the window is in the bank: all zeros
        (14, 60, 5),  # the whole video inside one window
        (12, 1, 3),  # one second
    ],
)
def test_sample_window_matches_reference(bank_file: tuple[Path, dict], timestamp: int, window_size: int, k: int) -> None:
    path, written = bank_file
    bank = FeatureBank(path)
    rows = {ts: torch.from_numpy(written[("a", ts)][0]) for (vid, ts) in A_COUNTS}
    got = bank.sample_window("a", timestamp, window_size, k, generator=torch.Generator().manual_seed(7))
    want = reference_window(rows, timestamp, window_size, k, torch.Generator().manual_seed(7))
    assert got.dtype == torch.float32 and got.shape == (window_size * k, C)
    assert torch.equal(got, want)
    # generator=None draws from torch's global RNG, exactly as MMAction2 does
    torch.manual_seed(3)
    got_global = bank.sample_window("a", timestamp, window_size, k)
    torch.manual_seed(3)
    assert torch.equal(got_global, reference_window(rows, timestamp, window_size, k, None))


def test_sample_window_rows_by_hand(bank_file: tuple[Path, dict]) -> None:
    """Independent of any RNG: second 12 (7 rows) keeps 5 distinct rows of its own; gaps are zero."""
    path, written = bank_file
    window = FeatureBank(path).sample_window("a", 13, window_size=6, max_per_second=5).view(6, 5, C)
    # window seconds 10..15
    own = {tuple(r) for r in written[("a", 12)][0].astype(np.float32).tolist()}
    picked = [tuple(r) for r in window[2].tolist()]
    assert len(set(picked)) == 5 and set(picked) <= own
    assert torch.equal(window[1, 1:], torch.zeros(4, C))  # second 11 has one row
    assert set(map(tuple, window[1, :1].tolist())) == {tuple(written[("a", 11)][0][0].astype(np.float32))}
    assert torch.equal(window[5], torch.zeros(5, C))  # second 15 is absent


class _Windows(torch.utils.data.Dataset):
    def __init__(self, bank: FeatureBank, keys: list[tuple[str, int]]) -> None:
        self.bank, self.keys = bank, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        vid, ts = self.keys[i]
        g = torch.Generator().manual_seed(i)
        return self.bank[vid, ts].float().sum(0), self.bank.sample_window(vid, ts, 4, 2, generator=g)


def test_dataloader_two_workers(bank_file: tuple[Path, dict]) -> None:
    path, _ = bank_file
    bank = FeatureBank(path)
    bank["a", 10]  # the parent has open handles before the fork: workers must open their own
    state = pickle.dumps(bank)
    assert len(state) < 500 and pickle.loads(state)["b", 902].shape == (3, C)
    keys = sorted(COUNTS)
    dataset = _Windows(bank, keys)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    sums, windows = zip(*[(s, w) for batch in loader for s, w in zip(*batch, strict=True)], strict=True)
    for i in range(len(keys)):
        want_sum, want_window = dataset[i]
        assert torch.equal(sums[i], want_sum) and torch.equal(windows[i], want_window)
    bank.close()
    assert bank["a", 11].shape == (1, C)  # reopens after close
