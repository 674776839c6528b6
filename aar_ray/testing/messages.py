"""The Messages API's wire format as the fakes need it: the replies a script returns (`text_reply`,
`tool_reply`, `error_reply`) and a reading of a request's transcript (`transcript`, `find`).
Shared by the fake server (`fake_anthropic.py`) and the scripted models that play researchers
(`researcher.py`, `injected.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aar_ray.brains.untrusted import unfence

Spec = dict[str, Any]  # one scripted reply: a message, or {"error": status, ...}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def text_reply(text: str, stop_reason: str = "end_turn") -> Spec:
    return {"content": [{"type": "text", "text": text}] if text else [], "stop_reason": stop_reason}


def tool_reply(name: str, tool_input: Any, text: str = "", *, stop_reason: str = "tool_use",
               tool_id: str | None = None) -> Spec:
    """An assistant turn calling one tool (`tool_input` may be malformed on purpose)."""
    block = {"type": "tool_use", "name": name, "input": tool_input}
    if tool_id:
        block["id"] = tool_id
    content = ([{"type": "text", "text": text}] if text else []) + [block]
    return {"content": content, "stop_reason": stop_reason}


def error_reply(status: int = 529, *, retry_after_ms: int | None = 10, message: str = "") -> Spec:
    return {"error": status, "retry_after_ms": retry_after_ms,
            "message": message or ERROR_TYPES.get(status, "error")}


def content_blocks(content: Any) -> list[Any]:
    """A message's content as a list of blocks (a plain string is one text block)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])




def find(obj: Any, pred: Callable[[str], bool]) -> Any:
    """The first value in nested JSON whose key satisfies `pred`."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if pred(str(k).lower()) and not isinstance(v, dict | list):
                return v
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            found = find(v, pred)
            if found is not None:
                return found
    return None


def transcript(messages: list[dict[str, Any]]) -> tuple[list[tuple], bool]:
    """[(tool, input, result text, is_error)] in order; whether the last user turn had results."""
    calls: dict[str, tuple[str, Any]] = {}
    done: list[tuple] = []
    last_has_results = False
    for msg in messages:
        blocks = content_blocks(msg.get("content"))
        for b in blocks:
            if b.get("type") == "tool_use":
                calls[b.get("id")] = (b.get("name"), b.get("input"))
            elif b.get("type") == "tool_result":
                content = b.get("content")
                if isinstance(content, list):
                    content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
                name, args = calls.get(b.get("tool_use_id"), ("?", {}))
                done.append((name, args if isinstance(args, dict) else {},
                             unfence(str(content or "")), bool(b.get("is_error"))))
        if msg.get("role") == "user":
            last_has_results = any(b.get("type") == "tool_result" for b in blocks)
    return done, last_has_results
