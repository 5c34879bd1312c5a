"""AVA inputs -> the sorted keyframe list the extraction runs over.

Reads the annotation CSV, the excluded-timestamps CSV and person proposals (MMAction2's pkl or a
CSV), validating every row so a bad file fails at once with one line naming the file and the row
(1-based) or key, instead of deep inside a multi-GPU run. ``build_keyframes`` then applies
MMAction2's AVADataset test-mode selection (see docs/inputs.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lfbtool.data._proposals_fast import BOX_TOLERANCE, proposals_at_once
from lfbtool.errors import LfbError
from lfbtool.keys import key_text, timestamp_problem, video_id_problem

Key = tuple[str, int]
WHOLE_FRAME = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Keyframe:
    """One keyframe and the person boxes whose features go into the bank."""

    video_id: str
    timestamp: int
    boxes: np.ndarray  # float32 [n, 4], normalized x1, y1, x2, y2
    scores: np.ndarray  # float32 [n], NaN when the boxes came from annotations

    @property
    def key(self) -> str:
        return key_text(self.video_id, self.timestamp)


@dataclass(frozen=True)
class Skipped:
    """A keyframe left out of the bank, and why (reported to the user, never silent)."""

    video_id: str
    timestamp: int
    reason: str

    @property
    def key(self) -> str:
        return key_text(self.video_id, self.timestamp)


def _rows(path: str | Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(1-based line number, stripped fields)`` of non-blank lines; LfbError if unreadable."""
    path = Path(path)
    if not path.exists():
        raise LfbError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise LfbError(f"{path}: is a directory, expected a CSV file ({what})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LfbError(f"{path}: not a UTF-8 text file ({what}): {exc}") from exc
    except OSError as exc:
        raise LfbError(f"{path}: cannot read ({what}): {exc.strerror or exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, [field.strip() for field in line.split(",")]


def _header_hint(where: str) -> str:
    return " (AVA CSVs have no header row)" if where.endswith(": row 1") else ""


def _timestamp(value: str, where: str) -> int:
    try:
        timestamp = int(value)
    except ValueError:
        raise LfbError(
            f"{where}: timestamp {value!r} is not an integer number of seconds{_header_hint(where)}"
        ) from None
    problem = timestamp_problem(timestamp)
    if problem:
        raise LfbError(f"{where}: {problem}")
    return timestamp


def _video_id(value: str, where: str) -> str:
    """A video id that names a directory or file inside its root (checked before anything is opened)."""
    problem = video_id_problem(value)
    if problem:
        raise LfbError(f"{where}: video_id {value!r} {problem}")
    return value


def _numbers(values: list[str], names: tuple[str, ...], where: str) -> list[float]:
    out = []
    for name, value in zip(names, values, strict=True):
        try:
            number = float(value)
        except ValueError:
            raise LfbError(f"{where}: {name} {value!r} is not a number{_header_hint(where)}") from None
        if not math.isfinite(number):
            raise LfbError(f"{where}: {name} {value!r} is not a finite number")
        out.append(number)
    return out


def _check_box(box: list[float] | np.ndarray, where: str) -> list[float]:
    """Boxes are normalized x1, y1, x2, y2 with x1 <= x2 and y1 <= y2; a coordinate up to
    ``BOX_TOLERANCE`` outside [0, 1] is clipped to it. The message shows every digit (repr)."""
    values = [float(v) for v in box]
    digits = [str(v) if isinstance(v, np.floating) else repr(float(v)) for v in box]  # shortest exact form
    text = "[" + ", ".join(digits) + "]"
    for name, value, shown in zip(("x1", "y1", "x2", "y2"), values, digits, strict=True):
        if not -BOX_TOLERANCE <= value <= 1 + BOX_TOLERANCE:
            raise LfbError(f"{where}: box {text}: {name} {shown} is outside [0, 1] (by more than the "
                           f"{BOX_TOLERANCE:g} allowed for rounding); boxes must be normalized x1,y1,x2,y2")
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        raise LfbError(f"{where}: box {text} has x2 < x1 or y2 < y1")
    return [min(max(value, 0.0), 1.0) for value in values]


def read_annotations(path: str | Path) -> dict[Key, np.ndarray]:
    """AVA annotation CSV -> unique boxes per keyframe, float32 ``[n, 4]`` in first-seen order.

    Rows are ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id`` (no header); one row per
    (person, action), so a box repeats once per action. Boxes are compared as parsed (float64), as
    MMAction2's ``parse_img_record`` does. The trailing id columns may be empty or absent.
    """
    boxes: dict[Key, list[tuple[float, ...]]] = {}
    for number, fields in _rows(path, "annotations"):
        where = f"{path}: row {number}"
        if not 6 <= len(fields) <= 8:
            raise LfbError(
                f"{where}: expected 8 columns (video_id,timestamp,x1,y1,x2,y2,action_id,person_id), got {len(fields)}"
            )
        _video_id(fields[0], where)
        timestamp = _timestamp(fields[1], where)
        box = _check_box(_numbers(fields[2:6], ("x1", "y1", "x2", "y2"), where), where)
        seen = boxes.setdefault((fields[0], timestamp), [])
        if tuple(box) not in seen:
            seen.append(tuple(box))
    return {key: np.array(value, dtype=np.float32).reshape(-1, 4) for key, value in boxes.items()}


def read_excluded(path: str | Path) -> set[Key]:
    """Excluded-timestamps CSV (``video_id,timestamp`` rows) -> set of keys to leave out."""
    keys: set[Key] = set()
    for number, fields in _rows(path, "excluded timestamps"):
        where = f"{path}: row {number}"
        if len(fields) != 2:
            raise LfbError(f"{where}: expected 2 columns (video_id,timestamp), got {len(fields)}")
        keys.add((_video_id(fields[0], where), _timestamp(fields[1], where)))
    return keys


def read_proposals(path: str | Path) -> dict[Key, np.ndarray]:
    """Person proposals -> float32 ``[n, 5]`` (x1, y1, x2, y2, score) or ``[n, 4]`` per keyframe.

    ``.pkl``: MMAction2's dict ``"video_id,0902" -> array``, unpickled without running code.
    ``.csv``: rows ``video_id,timestamp,x1,y1,x2,y2,score`` (or without the score column, the same
    for every row, or FAIR's ``video_id,timestamp,x1,y1,x2,y2,action_id,score``); rows of one key
    keep their file order.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return _read_proposals_pkl(path)
    if suffix == ".csv":
        return _read_proposals_csv(path)
    raise LfbError(f"{path}: unsupported proposals format {suffix or '(no extension)'!r}; use .pkl or .csv")


def _read_proposals_pkl(path: Path) -> dict[Key, np.ndarray]:
    from lfbtool._io.pickle_fast import collector_paused
    from lfbtool._io.safe_pickle import load_plain, read_bytes
    from lfbtool.data import _proposals_decode

    if not path.exists():
        raise LfbError(f"{path}: no such file (proposals)")
    with collector_paused():  # the load and the checks: ~200k objects the collector would walk again and again
        raw = read_bytes(path)
        decoded = _proposals_decode.decode(raw)  # the usual protocol 4 layout, read without unpickling
        if decoded is not None:
            return decoded
        data = load_plain(path, data=raw)  # anything else: the generic path decides, naming the key
        del raw
        if not isinstance(data, dict):
            raise LfbError(f"{path}: expected a dict 'video_id,timestamp' -> array, got {type(data).__name__}")
        checked = proposals_at_once(data)
    return checked if checked is not None else _proposals_one_by_one(path, data)


def _proposals_one_by_one(path: Path, data: dict) -> dict[Key, np.ndarray]:
    out: dict[Key, np.ndarray] = {}
    for raw_key, value in data.items():
        where = f"{path}: key {raw_key!r}"
        parts = raw_key.split(",") if isinstance(raw_key, str) else []
        if len(parts) != 2 or not parts[0]:
            raise LfbError(f"{where}: keys must be 'video_id,timestamp' strings like 'vid,0902'")
        key = (_video_id(parts[0], where), _timestamp(parts[1].strip(), where))
        if key in out:
            raise LfbError(f"{where}: duplicate of another key for {key[0]},{key[1]:04d}")
        array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
        if (
            array is None
            or array.ndim != 2
            or array.shape[1] not in (4, 5)
            or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
        ):
            shape = f"shape {array.shape} {array.dtype}" if array is not None else type(value).__name__
            raise LfbError(f"{where}: expected a numeric [n, 4] or [n, 5] array, got {shape}")
        if not np.isfinite(array).all():
            raise LfbError(f"{where}: contains NaN or infinite values")
        for i, row in enumerate(array):
            _check_box(row[:4], f"{where} box {i}")
        out[key] = array.astype(np.float32)
        np.clip(out[key][:, :4], 0, 1, out=out[key][:, :4])  # within BOX_TOLERANCE outside: onto [0, 1]
    return out


_CSV_LAYOUTS = {
    6: "6 columns (video_id,timestamp,x1,y1,x2,y2)",
    7: "7 columns (video_id,timestamp,x1,y1,x2,y2,score)",
    8: "8 columns (video_id,timestamp,x1,y1,x2,y2,action_id,score; FAIR's predicted boxes)",
}


def _read_proposals_csv(path: Path) -> dict[Key, np.ndarray]:
    """6, 7 or 8 columns (one layout per file). In FAIR's 8-column layout (``*_predicted_boxes.csv``,
    read by the original LFB and PySlowFast) column 7 is an action id or empty and is ignored; a box
    repeated within a key (one row per action) is kept once, with its first row's score."""
    rows: dict[Key, list[list[float]]] = {}
    width = None
    for number, fields in _rows(path, "proposals"):
        where = f"{path}: row {number}"
        if len(fields) not in _CSV_LAYOUTS or (width is not None and len(fields) != width):
            expected = _CSV_LAYOUTS.get(width, "6, 7 or 8 columns (video_id,timestamp,x1,y1,x2,y2[,action_id],score)")
            raise LfbError(f"{where}: expected {expected}, got {len(fields)}")
        width = len(fields)
        _video_id(fields[0], where)
        timestamp = _timestamp(fields[1], where)
        if width == 8:
            if fields[6] and not fields[6].lstrip("-").isdigit():
                raise LfbError(f"{where}: action_id {fields[6]!r} is not an integer or empty")
            fields = fields[:6] + fields[7:]
        values = _numbers(fields[2:], ("x1", "y1", "x2", "y2", "score")[: len(fields) - 2], where)
        values[:4] = _check_box(values[:4], where)
        seen = rows.setdefault((fields[0], timestamp), [])
        if width != 8 or all(row[:4] != values[:4] for row in seen):
            seen.append(values)
    return {key: np.array(value, dtype=np.float32) for key, value in rows.items()}


def select_proposals(
    proposals: np.ndarray, *, score_threshold: float, max_proposals: int
) -> tuple[np.ndarray, np.ndarray]:
    """MMAction2's proposal selection -> ``(boxes [n, 4], scores [n])`` float32.

    ``[n, 5]``: keep scores >= min(threshold, best score) (so the best-scoring boxes survive when
    none passes), then the first ``max_proposals``. ``[n, 4]``: the first ``max_proposals``, NaN
    scores. The comparison runs in float32 against the threshold rounded to float32.
    """
    proposals = np.asarray(proposals, dtype=np.float32)
    if proposals.shape[1] == 5:
        scores = proposals[:, 4]
        threshold = min(np.float32(score_threshold), scores.max())
        proposals = proposals[scores >= threshold][:max_proposals]
        return np.ascontiguousarray(proposals[:, :4]), np.ascontiguousarray(proposals[:, 4])
    proposals = proposals[:max_proposals]
    return np.ascontiguousarray(proposals), np.full(len(proposals), np.nan, dtype=np.float32)


def _count_removed(removed: dict[str, int], proposals: np.ndarray, kept: int, score_threshold: float) -> None:
    """Add the boxes of one keyframe that the score filter and the per-keyframe cap dropped."""
    proposals = np.asarray(proposals, dtype=np.float32)
    passed = len(proposals)
    if proposals.shape[1] == 5:
        scores = proposals[:, 4]
        passed = int((scores >= min(np.float32(score_threshold), scores.max())).sum())
    removed["proposal_score_threshold"] = removed.get("proposal_score_threshold", 0) + len(proposals) - passed
    removed["max_proposals"] = removed.get("max_proposals", 0) + passed - kept


def build_keyframes(
    *,
    source: Literal["annotated", "proposals", "every-second"],
    annotations: dict[Key, np.ndarray] | None,
    excluded: set[Key],
    proposals: dict[Key, np.ndarray] | None,
    seconds: list[Key] | None = None,
    score_threshold: float = 0.9,
    whole_frame_fallback: bool = False,
    max_proposals: int = 1000,
    removed: dict[str, int] | None = None,
) -> tuple[list[Keyframe], list[Skipped]]:
    """The keyframes to extract, sorted by (video_id, timestamp), and those skipped with a reason.

    ``annotated`` (MMAction2 AVADataset): annotated keys minus excluded; boxes from the proposals
    when given (a key absent from them gets the whole frame ``[0, 0, 1, 1]`` with score 1 if
    ``whole_frame_fallback``, MMAction2's behaviour, else is skipped with reason "no proposals"),
    else the annotated boxes with NaN scores. ``proposals`` (original LFB): every proposal key
    minus excluded. ``every-second`` (own videos): the keys ``seconds`` (every second with a whole
    clip, :mod:`lfbtool.data.videos`) minus excluded, boxes from the proposals (a detector's) as for
    ``annotated``.

    ``removed``: counts added under ``proposal_score_threshold`` and ``max_proposals``, the boxes each
    filter dropped (a summary says so, never silently).
    """
    if not 0.0 <= score_threshold <= 1.0:
        raise LfbError(f"score threshold must be in [0, 1], got {score_threshold}")
    if max_proposals < 1:
        raise LfbError(f"max proposals must be >= 1, got {max_proposals}")
    if source == "annotated":
        if annotations is None:
            raise LfbError("keyframes 'annotated' need an annotations CSV (--annotations)")
        keys = set(annotations)
    elif source == "proposals":
        if proposals is None:
            raise LfbError("keyframes 'proposals' need a proposals file (--proposals)")
        keys = set(proposals)
    elif source == "every-second":
        if seconds is None or proposals is None:
            raise LfbError("keyframes 'every-second' need the seconds to use and person boxes (lfbtool detect)")
        keys = set(seconds)
    else:
        raise LfbError(f"unknown keyframe source {source!r}; expected annotated, proposals or every-second")

    keyframes: list[Keyframe] = []
    skipped: list[Skipped] = []
    for video_id, timestamp in sorted(keys - set(excluded)):
        key = (video_id, timestamp)
        if proposals is None:
            assert annotations is not None
            boxes = annotations[key]
            scores = np.full(len(boxes), np.nan, dtype=np.float32)
        elif key in proposals and len(proposals[key]) > 0:
            boxes, scores = select_proposals(
                proposals[key], score_threshold=score_threshold, max_proposals=max_proposals
            )
            if removed is not None:
                _count_removed(removed, proposals[key], len(boxes), score_threshold)
        elif whole_frame_fallback:
            boxes, scores = WHOLE_FRAME.copy(), np.ones(1, dtype=np.float32)
        else:
            reason = "no person detected" if source == "every-second" else "no proposals"
            skipped.append(Skipped(video_id, timestamp, reason))
            continue
        keyframes.append(Keyframe(video_id, timestamp, boxes.astype(np.float32), scores.astype(np.float32)))
    return keyframes, skipped
