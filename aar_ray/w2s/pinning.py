"""Hash checks for third-party packaged models and data: a changed upload must fail loudly."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.cache
def _sha256(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    st = path.stat()
    actual = _sha256(str(path), st.st_size, st.st_mtime)
    if actual != expected:
        raise RuntimeError(
            f"{path}: SHA-256 {actual} does not match the pinned {expected}; the package "
            "was changed upstream — reinstall the pinned version"
        )
