"""Content hashes of input files (checkpoints are hundreds of MB: streamed, never read whole)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    """sha256 hex digest of the file at ``path``, read in ``block``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
