"""The campaign's operations log, `<campaign dir>/operations.jsonl`: what went wrong inside the
lab (not what agents did wrong), one JSON object a line, for the people running the campaign.

An entry is written for every *internal* error at the tool boundary (a bug: the agent sees only
the entry's id), every failed brain step and failed Messages API call, every actor Ray
restarted, every trial re-run after its worker or node died, and every stop and resume. Many
processes append to the one file: each entry is a single `os.write` on an `O_APPEND` descriptor,
which the kernel appends whole, so concurrent writers never interleave lines; a line left
without its newline by a writer that died (a full disk) is ended first, so it cannot swallow the
next entry. `aar status` and `aar report` read it.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

FILE = "operations.jsonl"
MAX_ARGS_CHARS = 4000  # a method's source or a notebook can be 100 kB; the head is enough


def record(campaign_dir: str | Path, kind: str, **fields: Any) -> str:
    """Append one entry of `kind` (e.g. "tool_internal_error") and return its id."""
    entry_id = f"err-{uuid.uuid4().hex[:10]}"
    entry = {"id": entry_id, "at": time.time(), "kind": kind, **fields}
    line = (json.dumps(entry, default=str) + "\n").encode()
    fd = os.open(Path(campaign_dir) / FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)
    return entry_id


def note_restart(campaign_dir: str | Path, actor: str) -> None:
    """An entry when Ray restarted the calling actor (a crash, a lost node, a kill), so the
    people running the campaign see every restart, not only its effects."""
    import ray  # the readers (status, report) need no Ray

    if ray.get_runtime_context().was_current_actor_reconstructed:
        record(campaign_dir, "actor_restarted", actor=actor)


def args_text(args: Any) -> str:
    """Tool arguments as JSON, cut to MAX_ARGS_CHARS."""
    text = json.dumps(args, default=str)
    if len(text) > MAX_ARGS_CHARS:
        text = text[:MAX_ARGS_CHARS] + f"... [{len(text) - MAX_ARGS_CHARS} more characters]"
    return text


def read(campaign_dir: str | Path) -> list[dict[str, Any]]:
    """Every entry, oldest first; [] when there is no log. A line cut short by a crash while it
    was written is skipped, not fatal: the readers are status and report."""
    path = Path(campaign_dir) / FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def headline(entry: dict[str, Any]) -> str:
    """The last line of an entry's traceback (`KeyError: 'x'`), or its error field."""
    tb = (entry.get("traceback") or "").strip().splitlines()
    return tb[-1] if tb else str(entry.get("error", ""))
