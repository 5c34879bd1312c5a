"""Run the ``lfbtool`` CLI with one injected fault (a test helper; lfbtool has no hooks).

    LFB_FAULT=segment-write LFB_FAULT_N=2 python tests/fault_runner.py extract --out OUT ...

``LFB_FAULT``
    ``segment-write``: the Nth write of rows into a shard segment raises the RuntimeError h5py raises
    when the disk is full (its text carries ``errno = 28``);
    ``merge-write``: the same for the merged bank ``lfb_<mode>.h5``;
    ``manifest``: the Nth rank manifest ``<mode>-a###-r#####.json`` fails with ENOSPC at its write;
    ``nan``: the Nth forward of the feature model returns NaN for every box;
    ``pause``: the Nth forward creates ``$LFB_PAUSE_DIR/paused`` and waits for ``$LFB_PAUSE_DIR/go``
    (a live run held at a known point, for the tests of concurrent commands);
    ``publish-pause``: the same before the Nth bank file is published (its name given), after every
    check of the output passed (two commands writing one output);
    ``export-pause``: the same before an export (either format) is published, its temporary complete.
``LFB_FAULT_N``
    1-based count of such events (default 1).
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import sys

H5_ENOSPC = ("Can't write data (file write failed: time = Mon Nov 30 00:00:00 2026, filename = 'x', "
             "file descriptor = 5, errno = 28, error message = 'No space left on device', buf = 0x0, "
             "total write size = 524288, bytes this sub-write = 524288, bytes actually written = "
             "18446744073709551615, offset = 0)")
SEGMENT_TMP = re.compile(r"-a\d{3}-r\d{5}-s\d{6}\.h5\.tmp-")
BANK_TMP = re.compile(r"lfb_[^/]+\.h5\.tmp-")
MANIFEST_TMP = re.compile(r"-a\d{3}-r\d{5}\.json\.tmp-")


def pause() -> None:
    """Create ``$LFB_PAUSE_DIR/paused``, then wait (at most 10 minutes) for ``$LFB_PAUSE_DIR/go``."""
    import time
    from pathlib import Path

    where = Path(os.environ["LFB_PAUSE_DIR"])
    (where / "paused").touch()
    deadline = time.time() + 600
    while not (where / "go").exists() and time.time() < deadline:
        time.sleep(0.05)


def install(fault: str, n: int) -> None:
    seen = 0

    def arrive() -> bool:
        nonlocal seen
        seen += 1
        return seen == n

    if fault in ("segment-write", "merge-write"):
        import h5py

        pattern = SEGMENT_TMP if fault == "segment-write" else BANK_TMP
        original = h5py.Dataset.__setitem__

        def setitem(self, key, value):
            if pattern.search(self.file.filename) and self.name == "/features" and arrive():
                raise RuntimeError(H5_ENOSPC)
            return original(self, key, value)

        h5py.Dataset.__setitem__ = setitem
    elif fault == "manifest":
        from lfbtool._io import atomic

        def fake_open(file, mode="r", *args, **kwargs):
            handle = builtins.open(file, mode, *args, **kwargs)
            if "w" in mode and MANIFEST_TMP.search(str(file)) and arrive():
                handle.close()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
            return handle

        atomic.open = fake_open
    elif fault == "nan":
        import torch

        from lfbtool.models.lfb_model import LFBFeatureModel

        original_forward = LFBFeatureModel.forward

        def forward(self, clips, rois):
            features = original_forward(self, clips, rois)
            return torch.full_like(features, float("nan")) if arrive() else features

        LFBFeatureModel.forward = forward
    elif fault == "pause":
        from lfbtool.models.lfb_model import LFBFeatureModel

        original_forward = LFBFeatureModel.forward

        def forward(self, clips, rois):
            if arrive():
                pause()
            return original_forward(self, clips, rois)

        LFBFeatureModel.forward = forward
    elif fault == "publish-pause":
        from lfbtool.bank import writer

        original_publish = writer.publish

        def publish(tmp, path, **kwargs):
            if arrive():
                pause()
            return original_publish(tmp, path, **kwargs)

        writer.publish = publish
    elif fault == "export-pause":
        from lfbtool._io import atomic
        from lfbtool.bank import export

        def paused(original):
            def publish(*args, **kwargs):
                if arrive():
                    pause()
                return original(*args, **kwargs)
            return publish

        atomic.publish = paused(atomic.publish)  # mmaction-pkl: atomic_write -> atomic_output -> publish
        export.publish_directory = paused(export.publish_directory)  # npz-dir
    else:
        raise SystemExit(f"fault_runner: unknown LFB_FAULT {fault!r}")


def main() -> None:
    install(os.environ["LFB_FAULT"], int(os.environ.get("LFB_FAULT_N", "1")))
    from lfbtool.cli import main as cli_main

    sys.argv = ["lfbtool", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
