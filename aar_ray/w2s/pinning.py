"""Pins for third-party models and data: SHA-256 hashes of packaged files, commit hashes of hub
repositories. A changed upload must fail loudly."""
from __future__ import annotations

import functools
import hashlib
import os
import re
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


COMMIT = re.compile(r"[0-9a-f]{40}")


def check_revision(repo: str, revision: str | None) -> dict[str, str]:
    """The `revision=` keyword for loading `repo`: a hub id must be pinned to a full commit hash
    (a branch or tag moves); a local directory (packaged or random test models) needs none."""
    if os.path.isdir(repo):
        return {}
    if revision is None or not COMMIT.fullmatch(revision):
        raise RuntimeError(
            f"{repo}: pin a revision: hub models and data sets load only at a full 40-hex commit "
            f"hash (got {revision!r}); find it on the hub page's 'Files and versions' history")
    return {"revision": revision}


def check_loaded_revision(repo: str, expected: str | None, loaded: str | None) -> None:
    """transformers records the commit it resolved a hub id to (`config._commit_hash`)."""
    if expected and loaded and loaded != expected:
        raise RuntimeError(f"{repo}: loaded commit {loaded}, but {expected} is pinned")
