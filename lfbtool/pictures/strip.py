"""The per-video strip of a bank: persons per second as bars, and a similarity band (the cosine of each
key's mean feature to the previous key's) in which shot changes and dead stretches stand out.

Read with :class:`~lfbtool.bank.bank_file.BankFile` (h5py + numpy), so a strip needs no torch. The
numbers a strip is drawn from come back with it (:class:`StripGeometry`), so what was drawn can be
checked against the bank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from lfbtool.bank.bank_file import BankFile, BankKeyError
from lfbtool.keys import key_text
from lfbtool.pictures.draw import BACKGROUND, GAP, MUTED, TEXT, TITLE_SIZE, font, line_height, text_size

BAR = (70, 130, 180)
NO_KEY = (225, 225, 225)
SIM_HIGH = (40, 90, 200)  # cosine 1: the same scene
SIM_LOW = (240, 90, 20)  # cosine <= 0: something else entirely
BAR_HEIGHT = 96
BAND_HEIGHT = 18
#: The plot is about this wide: one column per second, 1 to MAX_COLUMN pixels wide.
PLOT_WIDTH = 1000
MAX_COLUMN = 64


@dataclass(frozen=True)
class StripData:
    """Per second from a video's first key to its last: what the strip shows."""

    video: str
    seconds: np.ndarray  # int64, every second t0 .. t1
    counts: np.ndarray  # int64, persons (bank rows) per second; 0 where the bank has no key
    present: np.ndarray  # bool, the bank has a key at that second
    similarity: np.ndarray  # float64, cosine to the previous key's mean feature; NaN for the first key / no key


@dataclass(frozen=True)
class StripGeometry:
    """Where a strip was drawn: second ``seconds[i]`` is columns ``x0 + i * column`` .. ``+ column - 1``;
    its bar rises from row ``baseline`` (exclusive) by ``round(count * bar_height / max_count)`` pixels."""

    data: StripData
    x0: int
    baseline: int
    column: int
    bar_height: int
    max_count: int
    band: tuple[int, int]  # first and last row of the similarity band

    def moved(self, dx: int, dy: int) -> StripGeometry:
        return replace(self, x0=self.x0 + dx, baseline=self.baseline + dy,
                       band=(self.band[0] + dy, self.band[1] + dy))

    def bar_pixels(self, count: int) -> int:
        return round(count * self.bar_height / self.max_count) if self.max_count else 0


def strip_data(bank: BankFile, video: str) -> StripData:
    """Counts and similarities of one video of an open bank (its rows read in one slice)."""
    if video not in bank.video_index:
        raise BankKeyError(f"video {video!r} is not in bank {bank.path}")
    rows = bank.read_video(video)
    counts = np.diff(rows.row_offsets).astype(np.int64)
    means = np.full((len(counts), bank.feature_dim), np.nan)
    features = rows.features.astype(np.float64)
    for i, (r0, r1) in enumerate(zip(rows.row_offsets[:-1], rows.row_offsets[1:], strict=True)):
        if r1 > r0:
            means[i] = features[r0:r1].mean(axis=0)
    norms = np.linalg.norm(means, axis=1)
    cosine = np.full(len(counts), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine[1:] = (means[1:] * means[:-1]).sum(axis=1) / (norms[1:] * norms[:-1])
    t0, t1 = int(rows.timestamps[0]), int(rows.timestamps[-1])
    seconds = np.arange(t0, t1 + 1, dtype=np.int64)
    at = rows.timestamps - t0
    per_second = np.zeros(len(seconds), dtype=np.int64)
    present = np.zeros(len(seconds), dtype=bool)
    similarity = np.full(len(seconds), np.nan)
    per_second[at], present[at], similarity[at] = counts, True, cosine
    return StripData(video, seconds, per_second, present, similarity)


def similarity_colour(value: float) -> tuple[int, int, int]:
    """Cosine 1 -> blue, 0 or below -> orange, linear between."""
    t = min(max(1.0 - float(value), 0.0), 1.0)
    return tuple(round(h + (lo - h) * t) for h, lo in zip(SIM_HIGH, SIM_LOW, strict=True))  # type: ignore[return-value]


def _tick_step(column: int) -> int:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if step * column >= 56:
            return step
    return 7200


def draw_strip(data: StripData) -> tuple[Image.Image, StripGeometry]:
    """The strip of one video: title, bars, band, second labels and a legend line."""
    n = len(data.seconds)
    column = max(1, min(MAX_COLUMN, PLOT_WIDTH // n))
    max_count = int(data.counts.max()) if n else 0
    left = max(text_size(str(max_count))[0], text_size("cos")[0]) + 6
    small = line_height()
    top = line_height(TITLE_SIZE) + 4
    baseline = top + small // 2 + BAR_HEIGHT
    band = (baseline + 3, baseline + 2 + BAND_HEIGHT)
    keys = int(data.present.sum())
    finite = np.isfinite(data.similarity)
    legend = "band: cosine of each key's mean feature to the previous key's, blue 1.0 .. orange <= 0; grey: no key"
    if finite.any():
        low = int(np.nanargmin(np.where(finite, data.similarity, np.nan)))
        legend += f"; lowest {data.similarity[low]:.3f} at {key_text(data.video, int(data.seconds[low]))}"
    width = max(left + n * column + text_size("0000")[0], text_size(legend)[0]) + GAP
    height = band[1] + 2 + 2 * small + 2
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    title = (f"{data.video}: persons per second ({keys} keys, {int(data.counts.sum())} persons, "
             f"seconds {int(data.seconds[0])}..{int(data.seconds[-1])})")
    draw.text((0, 0), title, fill=TEXT, font=font(TITLE_SIZE))
    geometry = StripGeometry(data, left, baseline, column, BAR_HEIGHT, max_count, band)
    gap = 1 if column >= 4 else 0
    for i in range(n):
        x = left + i * column
        height_px = geometry.bar_pixels(int(data.counts[i]))
        if height_px:
            draw.rectangle((x, baseline - height_px, x + column - 1 - gap, baseline - 1), fill=BAR)
        colour = NO_KEY if not data.present[i] else (
            similarity_colour(data.similarity[i]) if np.isfinite(data.similarity[i]) else BACKGROUND)
        draw.rectangle((x, band[0], x + column - 1, band[1]), fill=colour)
    draw.line((left, baseline, left + n * column - 1, baseline), fill=MUTED)
    draw.text((0, baseline - BAR_HEIGHT - small // 2), str(max_count), fill=MUTED, font=font())
    draw.text((0, baseline - small + 2), "0", fill=MUTED, font=font())
    draw.text((0, band[0] + (BAND_HEIGHT - small) // 2), "cos", fill=MUTED, font=font())
    step = _tick_step(column)
    for i, second in enumerate(data.seconds.tolist()):
        if second % step == 0 or i == 0:
            x = left + i * column
            draw.line((x, band[1] + 1, x, band[1] + 3), fill=MUTED)
            if i == 0 or (second - int(data.seconds[0])) * column >= 40:
                draw.text((x, band[1] + 3), str(second), fill=MUTED, font=font())
    draw.text((0, band[1] + 3 + small), legend, fill=MUTED, font=font())
    return image, geometry
