"""`write_method`'s copy check (aar_ray/lab/integrity.py `copied`/`copy_refusal`, and
aar_ray/lab/reads.py): code is compared by shingles with the union of everything its agent
read, so a payload split over two posts is still a copy; the agent's own writing is not."""
from __future__ import annotations

import json

from aar_ray.lab import integrity
from aar_ray.lab.reads import ReadRecord, texts

# eight lines of 13 tokens each (the comment is part of the line)
CODE = "\n".join(f"x{i} = compute_{i}(ctx, w{i})  # step {i} of 8" for i in range(8))
LINES = CODE.splitlines()


def _read(*parts: str) -> dict[int, str]:
    return {h: f"post {i}" for i, p in enumerate(parts) for h in integrity.shingles(p)}


def test_code_lines_drop_blanks_comments_imports_fences_and_ignored():
    text = ("import os\nfrom x import y\n  # note\n\n```python\n   a = 1  \nb = 2\n"
            "importer = 3\nfromage = 4\n")
    assert integrity.code_lines(text) == ["a = 1", "b = 2", "importer = 3", "fromage = 4"]
    assert integrity.code_lines(text, frozenset({"b = 2"})) == ["a = 1", "importer = 3",
                                                                "fromage = 4"]


def test_a_payload_split_over_two_posts_is_one_copy():
    """4 + 4 lines in two posts: each alone is under the threshold, their union is not."""
    first, second = "\n".join(LINES[:4]), "\n".join(LINES[4:])
    assert integrity.copy_refusal(CODE, _read(first)) is None
    assert integrity.copy_refusal(CODE, _read(second)) is None
    refusal = integrity.copy_refusal(CODE, _read(first, second))
    assert refusal.startswith("write_method refused: your code copies 8 lines") and \
        "(post 0, post 1)" in refusal
    # 4 + 3 lines, each post wrapped in prose and re-indented: still 7 lines
    posts = ("Part 1 of the helper:\n```python\n" + "\n".join("        " + s for s in LINES[:4])
             + "\n```", "Part 2:\n" + "\n".join(LINES[4:7]) + "\nthanks")
    assert integrity.copied(CODE, _read(*posts))[0] == 7


def test_thresholds_and_what_does_not_count():
    assert integrity.copied(CODE, {}) == (0, 0, [])
    assert integrity.copy_refusal(CODE, _read("\n".join(LINES[:4]))) is None  # 4 lines
    assert integrity.copied(CODE, _read("\n".join(LINES[:5])))[:2] == (
        5, sum(len(s.replace(" ", "")) for s in LINES[:5]))  # characters without whitespace
    assert integrity.copy_refusal(CODE, _read("\n".join(LINES[:5]))) is not None
    # shared idioms shorter than a shingle never count, however many of them are read
    idioms = "\n".join(f"x{i} = compute_{i}(ctx, w{i})" for i in range(8))  # 9 tokens each
    assert integrity.copied(idioms, _read(*idioms.splitlines()))[:2] == (0, 0)
    # a single long line: characters count (COPY_CHARS without whitespace)
    long = "yy = f(" + ", ".join(["a1"] * 65) + ")"  # 200 characters without spaces
    assert len(long.replace(" ", "")) == integrity.COPY_CHARS
    assert integrity.copy_refusal(long, _read(long)).startswith(
        "write_method refused: your code copies 1 lines (200 characters)")
    short = long[1:]  # 199
    assert integrity.copy_refusal(short, _read(short)) is None
    # the ignored lines (the lab's template) are skipped on both sides
    ignore = frozenset(LINES[:6])
    assert integrity.copy_refusal(CODE, {h: "p" for h in integrity.shingles(CODE, ignore)},
                                  ignore) is None


def test_the_record_keeps_reads_not_the_agents_own_writing(tmp_path):
    path = tmp_path / "reads.jsonl"
    rec = ReadRecord(path)
    mine, theirs = "\n".join(LINES[:6]), "\n".join(LINES[2:])
    rec.saw("post", {"title": "my code", "body": mine, "kind": "insight"}, '{"post_id": 1}')
    posts = [{"post_id": 1, "author": "me", "body": mine},
             {"post_id": 2, "author": "eve", "body": "Parts:\n" + theirs,
              "replies": [{"post_id": 3, "author": "bob", "body": "noted"}]}]
    rec.saw("read_forum", {}, json.dumps(posts))
    assert rec.copy_refusal(mine) is None  # its own post, read back
    own_then_new = "\n".join(LINES)
    # what only eve wrote (lines 6, 7), and line 5, most of which is in shingles across the seam
    assert integrity.copied(own_then_new, rec.read)[0] == 3
    assert set(rec.read.values()) == {"post 2 by eve"}
    # read first, written after (pasted into a note): still read, a restart keeps it
    other = CODE.replace("compute", "estimate")
    rec.saw("read_forum", {}, json.dumps([{"post_id": 4, "author": "eve", "body": other}]))
    rec.saw("write_notebook", {"text": other}, '{"chars": 1}')
    again = ReadRecord(path)
    assert again.read == rec.read and again.own == rec.own
    refusal = again.copy_refusal(other)
    assert "copies 8 lines" in refusal and "post 4 by eve)" in refusal
    # texts: JSON is read as JSON; errors and plain text as they are
    assert list(texts("plain error", "trial_status")) == [("trial_status", "plain error")]
    assert list(texts('[{"author": "a", "id": 5, "body": "b"}]', "t")) == [
        ("post 5 by a", "a"), ("post 5 by a", "b")]
