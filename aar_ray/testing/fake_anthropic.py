"""A local stand-in for the Anthropic Messages API, for tests and the `fake-claude` demo.

The real `anthropic` SDK is pointed at it (`base_url=fake.base_url`), so retries, parsing and
error classes are the SDK's own. It validates requests the way API version 2026-10-21 does where
that catches brain bugs (role order, tool_use/tool_result pairing, sampling parameters, cache
breakpoints), and reports usage the way the API does: tokens ≈ JSON length / 4, with prompt-cache
reads and writes computed from the `cache_control` breakpoints (20-block lookback, per model).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aar_ray.config import CampaignConfig
from aar_ray.testing.messages import (
    ERROR_TYPES,
    Spec,
    content_blocks,
    error_reply,
    text_reply,
    tool_reply,
)
from aar_ray.testing.researcher import researcher_policy

Script = list[Spec] | Callable[[dict[str, Any]], Spec] | None
_shared: FakeAnthropic | None = None
_shared_lock = threading.Lock()

LOOKBACK_BLOCKS = 20
__all__ = ["FakeAnthropic", "error_reply", "researcher_policy", "text_reply", "tool_reply"]


def _tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj, separators=(",", ":"), sort_keys=True)) // 4)


def _strip_cache(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    return {k: v for k, v in block.items() if k != "cache_control"}


def validate(body: dict[str, Any]) -> str | None:
    """The first reason the real API would answer 400, or None."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    for name in ("temperature", "top_p", "top_k"):
        if name in body:
            return f"{name}: Extra inputs are not permitted"
    msgs = body["messages"]
    if not msgs or msgs[0].get("role") != "user":
        return "messages: first message must use the user role"
    has_tools = bool(body.get("tools"))
    pending: set[str] = set()
    breakpoints = sum("cache_control" in t for t in body.get("tools") or [])
    breakpoints += sum("cache_control" in b for b in content_blocks(body.get("system")))
    for i, msg in enumerate(msgs):
        blocks = content_blocks(msg.get("content"))
        breakpoints += sum(isinstance(b, dict) and "cache_control" in b for b in blocks)
        if i and msg.get("role") == msgs[i - 1].get("role"):
            return f"messages.{i}: roles must alternate between user and assistant"
        if not blocks and i < len(msgs) - 1:
            return f"messages.{i}: all messages must have non-empty content"
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if pending and set(results[:len(pending)]) != pending:
            return (f"messages.{i}: tool_use ids were found without tool_result blocks "
                    f"immediately after: {', '.join(sorted(pending))}")
        if results and not pending >= set(results):
            return f"messages.{i}: unexpected tool_use_id found in tool_result blocks"
        pending = set()
        for b in blocks:
            if b.get("type") == "tool_use":
                if msg.get("role") != "assistant" or not isinstance(b.get("input"), dict):
                    return f"messages.{i}: tool_use.input: Input should be a valid dictionary"
                pending.add(b.get("id"))
        if (pending or results) and not has_tools:
            return "Requests which include tool_use or tool_result blocks must define tools."
    if breakpoints > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
    return None


class _PromptCache:
    """Prefix hashes written at cache_control breakpoints, read back with a 20-block lookback."""

    def __init__(self, min_tokens: int) -> None:
        self.min_tokens = min_tokens
        self._entries: set[str] = set()
        self._lock = threading.Lock()

    def usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(uncached input, cache read, cache creation) tokens for one request."""
        segments = list(body.get("tools") or []) + content_blocks(body.get("system"))
        for msg in body["messages"]:
            segments += [{"role": msg.get("role"), **b} for b in content_blocks(msg.get("content"))]
        if body.get("cache_control") and segments:  # top-level automatic caching
            segments[-1] = {**segments[-1], "cache_control": body["cache_control"]}
        digest = hashlib.sha256(str(body.get("model")).encode())
        hashes, cum, total = [], [], 0
        for seg in segments:
            digest.update(json.dumps(_strip_cache(seg), sort_keys=True).encode())
            hashes.append(digest.copy().hexdigest())
            total += _tokens(_strip_cache(seg))
            cum.append(total)
        points = [i for i, s in enumerate(segments) if isinstance(s, dict) and "cache_control" in s]
        with self._lock:
            read_at = -1
            for p in points:
                for j in range(p, max(-1, p - LOOKBACK_BLOCKS - 1), -1):
                    if hashes[j] in self._entries:
                        read_at = max(read_at, j)
                        break
            read = cum[read_at] if read_at >= 0 else 0
            writes = [p for p in points if p > read_at and cum[p] >= self.min_tokens]
            created = cum[writes[-1]] - read if writes else 0
            self._entries.update(hashes[p] for p in writes)
        return total - read - created, read, created


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()  # headers and body go out in separate writes: no Nagle delay between
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, _error_body(400, "body is not valid JSON"))
        fake = self.server.fake
        fake._record(self.path, dict(self.headers.items()), body)
        if not self.path.rstrip("/").endswith("/v1/messages"):
            return self._send(404, _error_body(404, f"no route {self.path}"))
        problem = validate(body)
        if problem:
            return self._send(400, _error_body(400, problem))
        try:
            spec = fake._next_spec(body)
        except Exception as e:  # a broken script is an API error, not a hung test
            return self._send(500, _error_body(500, f"fake script failed: {type(e).__name__}"))
        if spec.get("delay_s"):  # a slow answer: past the client's timeout it is a timeout
            time.sleep(spec["delay_s"])
        if "error" in spec:
            status = int(spec["error"])
            headers = {}
            if spec.get("retry_after_ms") is not None:
                headers["retry-after-ms"] = str(spec["retry_after_ms"])
            return self._send(status, _error_body(status, spec.get("message", "")), headers)
        self._send(200, fake._message(body, spec))

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
              ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", f"req_fake_{next(self.server.fake._ids)}")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAnthropic


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                       "message": message}}


class FakeAnthropic:
    """`with FakeAnthropic(script) as fake:` serves the Messages API at `fake.base_url`.

    `script`: a list of response specs consumed in order (then a plain end_turn reply), a
    callable `(request_json) -> spec`, or None for `researcher_policy()`. A spec is a message
    (`{"content": [...], "stop_reason": ...}`, see `text_reply`/`tool_reply`) or an error
    (`error_reply(529)`); `delay_s` in a spec delays its answer (a timeout). `requests` records
    each request's path, headers and JSON body; headers (which carry the API key) are recorded
    for tests and never sent back.
    """

    def __init__(self, script: Script = None, *, min_cache_tokens: int = 1024) -> None:
        self._script = researcher_policy() if script is None else script
        self._queue = list(script) if isinstance(script, list) else None
        self._cache = _PromptCache(min_cache_tokens)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def start(self) -> FakeAnthropic:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-anthropic")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})

    def _next_spec(self, body: dict[str, Any]) -> Spec:
        if self._queue is None:
            return self._script(body)  # type: ignore[operator]
        with self._lock:
            return self._queue.pop(0) if self._queue else text_reply("(script exhausted)")

    def _message(self, body: dict[str, Any], spec: Spec) -> dict[str, Any]:
        content = []
        for block in spec.get("content") or []:
            block = dict(block)
            if block.get("type") == "tool_use" and not block.get("id"):
                block["id"] = f"toolu_fake_{next(self._ids):05d}"
            content.append(block)
        uncached, read, created = self._cache.usage(body)
        usage = {"input_tokens": uncached, "output_tokens": _tokens(content) if content else 1,
                 "cache_read_input_tokens": read, "cache_creation_input_tokens": created}
        return {"id": f"msg_fake_{next(self._ids):05d}", "type": "message", "role": "assistant",
                "model": body.get("model"), "content": content,
                "stop_reason": spec.get("stop_reason", "end_turn"), "stop_sequence": None,
                "stop_details": spec.get("stop_details"), "usage": usage}


def serve_fake_claude(cfg: CampaignConfig) -> bool:
    """Point a `fake-claude` campaign's agents at this process's fake Messages API (started on
    first use): the process that starts the campaign serves it, on 127.0.0.1, so the demo runs
    on one machine. Any address already in `cfg` (a resumed campaign's) is stale: replaced.
    Returns whether `cfg` changed."""
    if cfg.brain != "fake-claude" or cfg.claude.base_url == (url := shared_base_url()):
        return False
    cfg.claude.base_url = url
    return True


def shared_base_url() -> str:
    """The address of this process's one fake Messages API, started on first use and left
    running while the process lives: the offline `fake-claude` demo's agents talk to it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FakeAnthropic().start()
        return _shared.base_url
