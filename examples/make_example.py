"""Build the bundled tiny AVA-style example into DIR (default examples/data).

Frames as JPEG directories and the same frames as lossless mp4, annotation / excluded CSVs,
MMAction2-style proposals (pkl and csv), and a random-weight slowonly_r50 checkpoint in MMAction2
layout, and a random-weight person detector. `make demo` runs this, then `lfbtool extract --config
examples/demo.toml` (AVA-style inputs) and `--config examples/own_videos.toml` (bare videos).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lfbtool.testing.checkpoints import make_random_detector_checkpoint, make_random_person_detector
from lfbtool.testing.synthetic import make_ava_example


def main(argv: list[str]) -> None:
    root = Path(argv[0] if argv else "examples/data")
    example = make_ava_example(root)
    checkpoint = make_random_detector_checkpoint(root / "slowonly_r50_random.pth")
    persons = make_random_person_detector(root / "person_detector_random.pth")
    print(f"example data in {root}: frames {example.frames_root}, videos {example.videos_root}, "
          f"checkpoint {checkpoint}, person detector {persons}")


if __name__ == "__main__":
    main(sys.argv[1:])
