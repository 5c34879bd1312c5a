"""Proposals pickles checked with whole-array operations: the usual AVA-train file (200k keys) in a
fraction of the time a key-by-key loop takes. Anything unusual returns None, and the loop in
``lfbtool.data.ava`` (which names the first bad key) gives the verdict."""

from __future__ import annotations

from operator import attrgetter, itemgetter

import numpy as np

from lfbtool.keys import timestamp_problem, video_id_problem

__all__ = ["BOX_TOLERANCE", "boxes_outside", "proposals_at_once"]

Key = tuple[str, int]
#: How far outside [0, 1] a box coordinate may lie and still count as normalized; it is then clipped to
#: [0, 1]. A detector's ``x / width`` in float32 gives 1.0000001 (one float32 step above 1 is 1.2e-7);
#: 1e-6 allows a few such steps, far below a pixel (1e-6 of a 4K frame is 0.004 px).
BOX_TOLERANCE = 1e-6
_ONE_BITS = int(np.float32(1).view(np.uint32))


def proposals_at_once(data: dict) -> dict[Key, np.ndarray] | None:
    """The usual file (``"vid,0902"`` keys, numeric 2-D arrays, valid boxes) checked with whole-array
    operations: 200k keys in a fraction of the time the key-by-key loop takes. None when anything is
    off; the loop then names the first problem."""
    arrays = list(data.values())
    if not arrays or set(map(type, arrays)) != {np.ndarray}:
        return None
    dtypes = set(map(attrgetter("dtype"), arrays))
    if any(dtype.kind not in "iuf" for dtype in dtypes):
        return None
    try:
        boxes = np.concatenate(arrays)  # one [n, 4] or [n, 5] array: every check below is one pass over it
    except ValueError:  # [n, 4] and [n, 5] arrays in one file, or arrays of other dimensions
        return None
    outside = boxes_outside(boxes)
    if outside is None:
        return None
    if dtypes != {np.dtype(np.float32)} or not all(map(attrgetter("flags.writeable"), arrays)):
        arrays = [array.astype(np.float32) for array in arrays]
    if outside.size:  # within BOX_TOLERANCE outside [0, 1]: clip those arrays onto it
        ends = np.cumsum(list(map(len, arrays)))
        for i in np.unique(np.searchsorted(ends, outside, side="right")).tolist():
            np.clip(arrays[i][:, :4], 0, 1, out=arrays[i][:, :4])
    out: dict[Key, np.ndarray] = {}
    try:
        for key, array in zip(data, arrays, strict=True):
            video_id, _, stamp = key.partition(",")
            out[video_id, int(stamp)] = array  # int() as in the loop: spaces and signs too
    except (AttributeError, TypeError, ValueError):  # not a str; no comma, two commas, not a number
        return None
    stamps = list(map(itemgetter(1), out))
    if len(out) != len(arrays) or any(timestamp_problem(t) for t in (min(stamps), max(stamps))):
        return None  # a duplicate ("v,902" and "v,0902"), or a timestamp a bank cannot hold
    if any(video_id_problem(v) for v in set(map(itemgetter(0), out))):
        return None
    return out


def boxes_outside(boxes: np.ndarray) -> np.ndarray | None:
    """Rows of ``boxes`` (all keys' boxes, one after another) with a corner within BOX_TOLERANCE outside
    [0, 1]; None when a box breaks a rule (outside by more, x2 < x1 or y2 < y1, NaN or infinite).

    Usually every value, scores too, lies in [0, 1]: one reduction says so (float32: +0.0 to 1.0 are the
    uint32s 0 to 0x3F800000; negatives, -0.0 too, NaN and infinities lie above); else column by column."""
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):  # all arrays 2-D: concatenate kept their ndim
        return None
    if boxes.dtype == np.float32:
        inside = bool(boxes.view(np.uint32).max(initial=0) <= _ONE_BITS)
    else:
        inside = bool(boxes.min(initial=0) >= 0 and boxes.max(initial=1) <= 1)  # NaN fails both
    if not inside:
        if not np.isfinite(boxes).all():
            return None
        low, high = boxes[:, :4].min(initial=0), boxes[:, :4].max(initial=1)
        if not (low >= -BOX_TOLERANCE and high <= 1 + BOX_TOLERANCE):
            return None
        inside = bool(low >= 0 and high <= 1)
    if not ((boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()):
        return None
    if inside:
        return np.empty(0, np.intp)
    return np.flatnonzero(((boxes[:, :4] < 0) | (boxes[:, :4] > 1)).any(axis=1))
