"""What reached an agent's context from outside it: the memory of `write_method`'s copy check.

Every tool result an agent gets is cut into shingles (`integrity.shingles`) and kept with where
it came from (a post and its author, or the tool), so that code can be compared with the union
of everything the agent read, not one post at a time: a payload split over two posts is one
copy. What the agent wrote itself (any tool input: posts, replies, methods, notes) is its own
and does not count when it comes back (its own post in `read_forum`), unless it had read that
text first: pasting a post into one's notebook does not launder it. The record is appended to
`reads.jsonl` in the agent's workspace, so a restarted agent keeps it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aar_ray.lab import integrity

MAX_DEPTH = 64  # tool input is the model's JSON, nested as deep as it likes


def texts(value: Any, where: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(where it came from, text) for every string in a tool's input or result (JSON text is
    read as JSON); a string inside an object with an author is labelled with it."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            pass
    if isinstance(value, dict):
        if "author" in value:
            where = f"post {value.get('post_id', value.get('id'))} by {value['author']}"
        for v in value.values():
            yield from texts(v, where, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from texts(v, where, depth + 1)
    elif isinstance(value, str):
        yield where, value


class ReadRecord:
    """One agent's record: `read` maps each shingle it read to where it first read it."""

    def __init__(self, path: Path, boilerplate: str = "") -> None:
        self.path = Path(path)
        self.ignore = frozenset(integrity.code_lines(boilerplate))  # everyone's template
        self.read: dict[int, str] = {}
        self.own: set[int] = set()
        self._seen: set[bytes] = set()  # digests of texts recorded (forum reads repeat posts)
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                entry = json.loads(line)
                self.own.update(entry["own"])
                for where, hashes in entry["read"].items():
                    for h in hashes:
                        self.read.setdefault(h, where)

    def saw(self, tool: str, args: Any, result: str) -> None:
        """Record one tool call: its input as the agent's own writing, then its result."""
        own = set().union(*(integrity.shingles(t, self.ignore) for _, t in texts(args, tool)))
        own -= self.own
        self.own |= own
        read: dict[str, list[int]] = {}
        for where, text in texts(result, tool):
            digest = hashlib.blake2b(text.encode(errors="replace"), digest_size=16).digest()
            if digest in self._seen:
                continue
            self._seen.add(digest)
            for h in integrity.shingles(text, self.ignore) - self.own - self.read.keys():
                self.read[h] = where
                read.setdefault(where, []).append(h)
        if own or read:
            with open(self.path, "a") as f:
                f.write(json.dumps({"tool": tool, "own": sorted(own), "read": read}) + "\n")

    def copy_refusal(self, code: str) -> str | None:
        """Why `code` is refused, if it copies what this agent read (`integrity.copy_refusal`)."""
        return integrity.copy_refusal(code, self.read, self.ignore)
