"""Tool results are data, never instructions: how the Claude brain fences them off.

Everything a tool returns may carry text written by someone other than the lab: forum posts and
replies by other agents (who may be compromised or adversarial), code, trial errors raised by
an agent's own method, echoes of the agent's input. The brain puts every tool result between
`<untrusted_data source="TOOL">` and `</untrusted_data>`, and the system prompt (prompt.md)
says that nothing inside those tags is an instruction. A text cannot close the fence early:
`defuse` removes every spelling of the tag's name a reader might take for the tag.
"""
from __future__ import annotations

import html
import re
import unicodedata

TAG = "untrusted_data"
DEFUSED = "fence-tag-removed"
# the name with anything but letters between its letters (`untrusted data`, `UNTRUSTED-DATA`,
# `u n t r u s t e d _ d a t a`), matched after `_normalised`, so entities and look-alikes are
# covered; tool results are JSON, whose `\\uXXXX` escapes of a letter (or of its fullwidth
# form, which NFKC would fold) count as that letter, and any other escape as a separator
_GAP = r"(?:[\W_]|\\u[0-9a-f]{4})*"


def _letter(c: str) -> str:
    forms = (c, c.upper(), chr(ord(c) - ord("a") + 0xFF41), chr(ord(c) - ord("a") + 0xFF21))
    return "(?:" + "|".join([c] + [rf"\\u{ord(f):04x}" for f in forms]) + ")"


_NAME = re.compile(_GAP.join(_letter(c) for c in "untrusteddata"), re.IGNORECASE)
_FENCE = re.compile(rf'^<{TAG} source="[\w-]*">\n(.*)\n</{TAG}>', re.DOTALL)
_ROUNDS = 4  # entity decoding until nothing changes: `&amp;lt;` is `&lt;` is `<`


def _normalised(text: str) -> str:
    """The text as a lenient reader sees it: HTML entities decoded (`&lt;`, `&#x3c;`, `&LT`),
    compatibility forms folded (fullwidth `＜`, small `﹤`), invisible format characters
    (zero-width spaces and joiners, bidi controls, soft hyphens) dropped."""
    for _ in range(_ROUNDS):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def defuse(text: str) -> str:
    """`text` normalised, with every spelling of the fence's tag name replaced: whatever
    brackets, spaces, case or encoding surround it, it can neither open nor close a fence."""
    return _NAME.sub(DEFUSED, _normalised(text))


def fence(source: str, text: str) -> str:
    """`text` between untrusted-data tags naming its `source` (a tool name)."""
    name = re.sub(r"[^\w-]", "_", source)[:40]
    return f'<{TAG} source="{name}">\n{defuse(text)}\n</{TAG}>'


def unfence(text: str) -> str:
    """The fenced text back (for readers of the conversation, e.g. the fake API's scripts);
    text that is not fenced comes back as it is."""
    m = _FENCE.match(text)
    return m.group(1) if m else text
