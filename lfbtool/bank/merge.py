"""Streaming merge of banks (or shard segments) into one bank, in (video, timestamp) order.

Inputs are sorted by their first key and grouped where their key ranges overlap; groups are merged
one after another, so only the inputs of one group are open at a time; they share one read budget
(``BLOCK_BYTES`` split over the group, at least a chunk each). Memory is bounded by that budget, not
by the bank size or the number of inputs. Shards of one run never overlap, so a shard merge is a
sequential copy with one input open.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfbtool._io.atomic import check_output_path
from lfbtool._io.lock import remove_dead_temporaries
from lfbtool.bank import format as fmt
from lfbtool.bank.writer import BankWriter
from lfbtool.choices import OnConflict
from lfbtool.errors import LfbError
from lfbtool.keys import key_text

Key = fmt.Key

#: Bytes of feature rows read at a time, shared by the open inputs of a group.
BLOCK_BYTES = 8 << 20
#: HDF5 chunk cache per dataset of an open input: holds a /boxes or /scores chunk (64 KiB), read
#: block after block; /features blocks span whole chunks, so caching those would only cost memory
#: (h5py's 1 MiB default per dataset made each of 32 open inputs cost ~2.5 MB more).
CHUNK_CACHE_BYTES = 256 << 10


@dataclass(frozen=True)
class MergeInput:
    """One input of a merge: where it is, how errors name it, and its checked index."""

    path: Path
    label: str
    index: fmt.BankIndex


def iter_keys(path: Path, label: str | None = None, block_bytes: int | None = None,
              ) -> Iterator[tuple[Key, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (key, features, boxes, scores) of every key in file order, reading rows in blocks of about
    ``block_bytes`` (default ``BLOCK_BYTES``) of features."""
    what = label or str(path)
    with fmt.open_bank(path, what, chunk_cache_bytes=CHUNK_CACHE_BYTES) as handle:
        index = fmt.read_checked_index(handle, what)
        videos, video_offsets, timestamps, row_offsets = (
            index.videos, index.video_key_offsets, index.timestamps, index.key_row_offsets)
        features, boxes, scores = (handle[name] for name in fmt.ROW_DATASETS)
        row_bytes = max(1, features.shape[1] * features.dtype.itemsize)
        block = max(fmt.FEATURE_CHUNK_ROWS, (block_bytes or BLOCK_BYTES) // row_bytes)
        block_start, block_stop = 0, 0
        f_block = b_block = s_block = None
        for v, video in enumerate(videos):
            for k in range(int(video_offsets[v]), int(video_offsets[v + 1])):
                start, stop = int(row_offsets[k]), int(row_offsets[k + 1])
                if stop > block_stop or f_block is None:
                    block_start = start
                    block_stop = min(max(stop, start + block), int(row_offsets[-1]))
                    f_block, b_block, s_block = (fmt.read_rows(data, block_start, block_stop, what)
                                                 for data in (features, boxes, scores))
                    fmt.refuse_non_finite(f_block, block_start, index)
                a, b = start - block_start, stop - block_start
                yield (video, int(timestamps[k])), f_block[a:b], b_block[a:b], s_block[a:b]


def _tagged(path: Path, label: str, order: int, block_bytes: int) -> Iterator[tuple[Key, int, list[np.ndarray]]]:
    """``iter_keys`` with the input's position, so equal keys from two inputs are told apart."""
    for key, *rows in iter_keys(path, label, block_bytes):
        yield key, order, rows


def _same_rows(x: tuple, y: tuple) -> bool:
    return all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f") for a, b in zip(x, y, strict=True))


@dataclass
class MergeReport:
    output: Path
    videos: int = 0
    keys: int = 0
    rows: int = 0
    identical_duplicates: list[str] = field(default_factory=list)
    conflicts_kept_first: list[str] = field(default_factory=list)


def check_compatible(headers: Sequence[MergeInput]) -> None:
    """Refuse inputs whose feature_dim, dtype or config fingerprint differ from the first one's."""
    first = headers[0]
    for header in headers[1:]:
        for name in ("feature_dim", "dtype", "config_fingerprint"):
            ours, theirs = first.index.attrs[name], header.index.attrs[name]
            if ours != theirs:
                words = _setting_words(header, first) if name == "config_fingerprint" else ""
                raise LfbError(
                    f"{header.label}: {name} {theirs!r} differs from {ours!r} in {first.label}{words}; "
                    "banks built with different settings cannot be merged"
                )


def _setting_words(header: MergeInput, first: MergeInput) -> str:
    """`` (clip_len 8 there, 4 in A.h5)``: which recorded compute settings differ, when both banks
    recorded an extraction config (the one "what differs" message, not only two fingerprints)."""
    from lfbtool.extract.config import compute_settings  # torch-free; only when fingerprints differ
    from lfbtool.runs.settings import describe_differences, differing_settings

    try:
        theirs, ours = (json.loads(h.index.attrs["config"] or "{}") for h in (header, first))
    except ValueError:
        return ""
    if not (isinstance(theirs, dict) and isinstance(ours, dict) and "backbone" in theirs and "backbone" in ours):
        return ""
    try:
        theirs, ours = compute_settings(theirs), compute_settings(ours)
    except KeyError:  # a config without some compute setting: the fingerprints say it all
        return ""
    if not differing_settings(theirs, ours):
        return ""
    return f" ({describe_differences(theirs, ours, now='there', then='in ' + first.label)})"


def _groups(headers: list[MergeInput]) -> list[list[MergeInput]]:
    """Inputs sorted by first key, grouped where key ranges overlap."""
    ordered = sorted((h for h in headers if h.index.num_keys), key=lambda h: (h.index.first_key, h.index.last_key))
    groups: list[list[MergeInput]] = []
    group_last: Key | None = None
    for header in ordered:
        if groups and group_last is not None and header.index.first_key <= group_last:
            groups[-1].append(header)
            group_last = max(group_last, header.index.last_key)
        else:
            groups.append([header])
            group_last = header.index.last_key
    return groups


def merge_banks(
    inputs: Sequence[Path],
    output: Path,
    *,
    labels: Sequence[str] | None = None,
    on_conflict: OnConflict | str = OnConflict.error,
    mode: str | None = None,
    config_json: str | None = None,
    overwrite: bool = False,
) -> MergeReport:
    """Merge ``inputs`` into ``output`` (written under a temporary name, renamed when complete).

    Without ``overwrite`` an existing ``output`` is refused before the work starts and again, atomically,
    at the rename: of two merges into one new file, the second to finish is refused and the first's
    bank stays.

    A key stored twice with identical rows is kept once and reported; with different rows it is an
    error naming the key, unless ``on_conflict="first"`` keeps the rows of the input listed first in ``inputs``.
    Every input passes :func:`~lfbtool.bank.format.read_checked_index` (verify's structural checks)
    before anything is written, and rows are checked finite and read through their checksums while
    copied: a merge never turns a damaged bank into one that verifies.
    """
    if not inputs:
        raise LfbError(f"{output}: nothing to merge (no input banks or segments)")
    on_conflict = OnConflict.parse(on_conflict, "--on-conflict")
    _refuse_output(Path(output), inputs, overwrite)
    labels = list(labels) if labels is not None else [str(p) for p in inputs]
    headers = [MergeInput(Path(p), label, fmt.read_header(p, label)) for p, label in zip(inputs, labels, strict=True)]
    check_compatible(headers)
    first = headers[0]
    if config_json is None:
        configs = {h.index.attrs["config"] for h in headers}
        config_json = first.index.attrs["config"] if len(configs) == 1 else json.dumps(
            {"merged_from": [{"path": h.label, "mode": h.index.mode, "config": json.loads(h.index.attrs["config"] or "{}")}
                             for h in headers]}
        )
    report = MergeReport(output=Path(output))
    with BankWriter(
        output, feature_dim=first.index.feature_dim, dtype=first.index.dtype,
        mode=mode or "+".join(sorted({h.index.mode for h in headers})), config_json=config_json,
        config_fingerprint=first.index.attrs["config_fingerprint"], checkpoint_sha256=first.index.attrs["checkpoint_sha256"],
        replace=overwrite,
    ) as writer:
        position = {id(h): i for i, h in enumerate(headers)}
        for group in _groups(headers):
            group = sorted(group, key=lambda h: position[id(h)])  # a key's tie goes to the input given first
            share = max(1, BLOCK_BYTES // len(group))
            streams = [_tagged(h.path, h.label, order, share) for order, h in enumerate(group)]
            previous: tuple[Key, int, list] | None = None
            for key, order, rows in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
                if previous is not None and previous[0] == key:
                    text = key_text(*key)
                    if _same_rows(previous[2], rows):
                        report.identical_duplicates.append(text)
                    elif on_conflict is OnConflict.first:
                        report.conflicts_kept_first.append(text)
                    else:
                        raise LfbError(
                            f"{group[order].label}: key {text} is also in {group[previous[1]].label} "
                            "with different features; use --on-conflict first to keep the first"
                        )
                    continue
                if key[0] != (writer.last_key or ("",))[0]:
                    report.videos += 1
                writer.append(key[0], key[1], *rows)
                previous = (key, order, rows)
        report.keys, report.rows = writer.num_keys, writer.num_rows
    return report


def _refuse_output(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """The output is never an input (it is replaced at the end), and an existing one needs --force."""
    for path in inputs:
        if Path(path).resolve() == output.resolve() or (output.exists() and Path(path).exists()
                                                        and output.samefile(path)):
            raise LfbError(f"{output}: is also an input of this merge; write the merged bank to a new file")
    check_output_path(output, overwrite=overwrite)
    remove_dead_temporaries(list(output.parent.glob(f"{output.name}.tmp-*")))
