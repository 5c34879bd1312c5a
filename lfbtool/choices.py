"""The fixed choices of lfbtool's options, as string enums: one definition each, shared by the CLI,
the config dataclasses and the library (``Pool("avg")`` validates; ``Pool.avg == "avg"`` holds)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import Enum

from lfbtool.errors import LfbError


def did_you_mean(value: object, known: Iterable[str]) -> str:
    """``"; did you mean bf16?"`` for a misspelled name (the closest of ``known``), else ``""``:
    appended to the one error line that refuses ``value``."""
    close = difflib.get_close_matches(str(value), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class Choice(str, Enum):
    """A ``str`` enum whose ``parse`` turns a bad value into one LfbError naming the option."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls, value: object, option: str) -> Choice:
        try:
            return cls(value)
        except ValueError:
            names = [member.value for member in cls]
            raise LfbError(f"{option} must be one of {', '.join(names)}, got {value!r}"
                           f"{did_you_mean(value, names)}") from None


class Pool(Choice):
    """Pooling over time or space: mean or max."""

    avg = "avg"
    max = "max"


class KeyframeSource(Choice):
    """Which seconds go into a bank: annotated keys (MMAction2), every proposal key (original LFB),
    every second of each video with a whole clip (own videos, see docs/own-videos.md)."""

    annotated = "annotated"
    proposals = "proposals"
    every_second = "every-second"


class CropMode(Choice):
    """Recognizer test crops: MMAction2's CenterCrop, ThreeCrop, TenCrop."""

    center = "center"
    three = "three"
    ten = "ten"


class AverageClips(Choice):
    """How view scores are reduced: mean logits, mean softmax, or per view."""

    score = "score"
    prob = "prob"
    none = "none"


class OnConflict(Choice):
    """A key stored twice with different rows during a merge: refuse, or keep the first input's."""

    error = "error"
    first = "first"


class Precision(Choice):
    """Compute precision of the model forward. fp32: exact (MMAction2 parity, the default); bf16 and
    fp16: autocast (see lfbtool.runtime.precision); auto: bf16 where the hardware computes it natively, else
    fp32, resolved before anything is recorded (a bank or a record holds the concrete one)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    auto = "auto"


class ExportFormat(Choice):
    """What ``lfbtool export`` writes."""

    mmaction_pkl = "mmaction-pkl"
    npz_dir = "npz-dir"


class AnnFormat(Choice):
    """Line layout of an MMAction2 annotation list: VideoDataset's ``path label`` or RawframeDataset's
    ``frame_dir total_frames label``."""

    video = "video"
    rawframes = "rawframes"
