"""Run the ``lfbtool`` CLI and SIGKILL this process at a chosen point (a test helper; lfbtool has no hooks).

    LFB_CRASH_AT=forward LFB_CRASH_N=4 python tests/crash_runner.py extract --out OUT ...
    LFB_CRASH_AT=rename LFB_CRASH_N=2 LFB_CRASH_RANK=0 \\
        python -m torch.distributed.run --nproc_per_node 2 tests/crash_runner.py extract ...

Arguments are ``lfbtool``'s. Environment:

``LFB_CRASH_AT``
    ``forward``: die inside the Nth call of ``LFBFeatureModel.forward`` (after computing, before
    returning, so that keyframe's features never reach a segment);
    ``rename``: die just before the Nth rename of a finished segment file into place (the segment
    was fully written under its temporary name, which is left behind);
    ``bank-rename``: die just before the merged bank ``lfb_<mode>.h5`` is renamed into place;
    ``detect``: die inside the Nth person detection call of ``lfbtool detect`` (boxes computed,
    never stored).
``LFB_CRASH_N``
    1-based count of such events in this process.
``LFB_CRASH_RANK``
    only the process with this ``RANK`` dies (default: every process).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

SEGMENT = re.compile(r"^\w+-a\d{3}-r\d{5}-s\d{6}\.h5$")
BANK = re.compile(r"^lfb_.+\.h5$")


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, n: int) -> None:
    """Patch the library so that the ``n``th event at ``point`` kills this process."""
    seen = 0

    def arrive() -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            _die()

    if point == "forward":
        from lfbtool.models.lfb_model import LFBFeatureModel

        original_forward = LFBFeatureModel.forward

        def forward(self, clips, rois):
            features = original_forward(self, clips, rois)
            arrive()
            return features

        LFBFeatureModel.forward = forward
    elif point == "detect":
        from lfbtool.detect import run as detect

        original_detect = detect.detect_persons

        def detect_persons(*args, **kwargs):
            found = original_detect(*args, **kwargs)
            arrive()
            return found

        detect.detect_persons = detect_persons
    elif point in ("rename", "bank-rename"):
        from lfbtool.bank import writer

        original_publish = writer.publish  # the one step that names a finished file (a rename or, without --force, a link)
        pattern = SEGMENT if point == "rename" else BANK

        def publish(tmp, path, *args, **kwargs):
            if pattern.match(Path(path).name):
                arrive()
            return original_publish(tmp, path, *args, **kwargs)

        writer.publish = publish
    else:
        raise SystemExit(f"crash_runner: LFB_CRASH_AT must be forward, rename, bank-rename or detect, got {point!r}")


def main() -> None:
    point = os.environ.get("LFB_CRASH_AT", "")
    wanted_rank = os.environ.get("LFB_CRASH_RANK")
    if point and (wanted_rank is None or wanted_rank == os.environ.get("RANK", "0")):
        install(point, int(os.environ.get("LFB_CRASH_N", "1")))
    from lfbtool.cli import main as lfbtool_main

    sys.argv = ["lfbtool", *sys.argv[1:]]
    lfbtool_main()


if __name__ == "__main__":
    main()
