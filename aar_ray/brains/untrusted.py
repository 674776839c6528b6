"""Tool results are data, never instructions: how the Claude brain fences them off.

Everything a tool returns may carry text written by someone other than the lab: forum posts and
replies by other agents (who may be compromised or adversarial), code, trial errors raised by
an agent's own method, echoes of the agent's input. The brain puts every tool result between
`<untrusted_data source="TOOL">` and `</untrusted_data>`, and the system prompt (prompt.md)
says that nothing inside those tags is an instruction. A text cannot close the fence early:
every tag of that name inside it is defused first.
"""
from __future__ import annotations

import re

TAG = "untrusted_data"
_TAGS = re.compile(rf"<(/?)\s*{TAG}", re.IGNORECASE)
_FENCE = re.compile(rf'^<{TAG} source="[\w-]*">\n(.*)\n</{TAG}>', re.DOTALL)


def fence(source: str, text: str) -> str:
    """`text` between untrusted-data tags naming its `source` (a tool name)."""
    name = re.sub(r"[^\w-]", "_", source)[:40]
    body = _TAGS.sub(lambda m: f"<{m.group(1)}untrusted-data", text)  # not our tag any more
    return f'<{TAG} source="{name}">\n{body}\n</{TAG}>'


def unfence(text: str) -> str:
    """The fenced text back (for readers of the conversation, e.g. the fake API's scripts);
    text that is not fenced comes back as it is."""
    m = _FENCE.match(text)
    return m.group(1) if m else text
