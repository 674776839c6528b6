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
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aar_ray.brains.untrusted import unfence

Spec = dict[str, Any]
Script = list[Spec] | Callable[[dict[str, Any]], Spec] | None

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}
LOOKBACK_BLOCKS = 20
__all__ = ["FakeAnthropic", "error_reply", "researcher_policy", "text_reply", "tool_reply"]


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


def _tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj, separators=(",", ":"), sort_keys=True)) // 4)


def _strip_cache(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    return {k: v for k, v in block.items() if k != "cache_control"}


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


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
    breakpoints += sum("cache_control" in b for b in _blocks(body.get("system")))
    for i, msg in enumerate(msgs):
        blocks = _blocks(msg.get("content"))
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
        segments = list(body.get("tools") or []) + _blocks(body.get("system"))
        for msg in body["messages"]:
            segments += [{"role": msg.get("role"), **b} for b in _blocks(msg.get("content"))]
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
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_fake_{next(self.server.fake._ids)}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAnthropic


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                       "message": message}}


class FakeAnthropic:
    """`with FakeAnthropic(script) as fake:` serves the Messages API at `fake.base_url`.

    `script`: a list of response specs consumed in order (then a plain end_turn reply), a callable
    `(request_json) -> spec`, or None for `researcher_policy()`. A spec is a message
    (`{"content": [...], "stop_reason": ...}`, see `text_reply`/`tool_reply`) or an error
    (`error_reply(529)`). `requests` records each request's path, headers and JSON body; headers
    (which carry the API key) are recorded for tests and never sent back.
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


# ---- a scripted researcher: plays plausible turns from the request alone ---------------------

ALIASES = {"method": ("method", "method_name", "name"),
           "params": ("params", "parameters", "config"),
           "seeds": ("seeds",), "trial_id": ("trial_id", "trial", "id"),
           "title": ("title", "subject"), "text": ("text", "body", "content", "message", "note"),
           "trial_ids": ("trial_ids", "cites", "citations", "trials"), "mode": ("mode",),
           "kind": ("kind",), "wait_s": ("wait_s",)}
DONE, FAILED = ("done", "finished", "complete", "succeeded", "scored"), ("fail", "error", "cancel")


def _fill(tools: dict[str, dict[str, Any]], name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Map canonical argument values onto the tool's own schema, whatever it names them."""
    props = (tools.get(name) or {}).get("properties")
    if not props:
        return values
    out: dict[str, Any] = {}
    for prop, schema in props.items():
        key = next((k for k, names in ALIASES.items() if prop in names and k in values), None)
        if key is None:
            continue
        value = values[key]
        if schema.get("type") == "array" and not isinstance(value, list):
            value = [value]
        if schema.get("enum") and value not in schema["enum"]:
            value = next((e for e in schema["enum"] if "result" in str(e)), schema["enum"][0])
        out[prop] = value
    return out


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _find(obj: Any, pred: Callable[[str], bool]) -> Any:
    """The first value in nested JSON whose key satisfies `pred`."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if pred(str(k).lower()) and not isinstance(v, dict | list):
                return v
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            found = _find(v, pred)
            if found is not None:
                return found
    return None


def _methods(text: str) -> list[str]:
    data = _json(text)
    if isinstance(data, dict):
        data = data.get("methods", list(data))
    if isinstance(data, list):
        names = [d if isinstance(d, str) else (d or {}).get("name") for d in data]
        return [n for n in names if isinstance(n, str)]
    return re.findall(r"^\W*([a-z][a-z0-9_]+)", text or "", re.M)


def _trial_id(text: str) -> str | None:
    found = _find(_json(text), lambda k: k in ("trial_id", "id"))
    if found is not None:
        return str(found)
    m = re.search(r"trial[_ ]?id\W+([\w.-]+)", text or "")
    return m.group(1) if m else None


def _history(messages: list[dict[str, Any]]) -> tuple[list[tuple], bool]:
    """[(tool, input, result text, is_error)] in order; whether the last user turn had results."""
    calls: dict[str, tuple[str, Any]] = {}
    done: list[tuple] = []
    last_has_results = False
    for msg in messages:
        blocks = _blocks(msg.get("content"))
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


def _tried(messages: list[dict[str, Any]], history: list[tuple]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for msg in messages:  # earlier context survives compaction as "Methods tried: a, b" lines
        for b in _blocks(msg.get("content")):
            for line in re.findall(r"Methods tried: ([^\n]*)", str(b.get("text", ""))):
                for m in re.findall(r"[A-Za-z][\w-]*", line):
                    counts[m] = counts.get(m, 0) + 1
    for name, args, _, _ in history:
        if name == "run_trial" and isinstance(args.get("method"), str):
            counts[args["method"]] = counts.get(args["method"], 0) + 1
    return counts


def researcher_policy(*, seeds: tuple[int, ...] = (0, 1), max_polls: int = 12
                      ) -> Callable[[dict[str, Any]], Spec]:
    """A stateless script that reads its request and plays the next plausible research move:
    read_forum → list_methods → describe_method → run_trial → trial_status (until done) → submit
    → post citing the trial → write_notebook → read_forum … with the least-tried method each time.
    A request with tool_choice "none" (a compaction) gets a summary naming the methods tried."""

    def policy(req: dict[str, Any]) -> Spec:
        tools = {t.get("name"): t.get("input_schema") or {} for t in req.get("tools") or []}
        history, fresh = _history(req["messages"])
        tried = _tried(req["messages"], history)
        if (req.get("tool_choice") or {}).get("type") == "none":
            trials = [f"{_trial_id(out)} ({a.get('method')})" for n, a, out, err in history
                      if n == "run_trial" and not err]
            return text_reply("Summary of my research so far.\nMethods tried: "
                              + ", ".join(sorted(tried)) + "\nTrials: " + ", ".join(trials)
                              + "\nNext: try the least-explored method and replicate the best.")

        def act(name: str, why: str, **values: Any) -> Spec:
            return tool_reply(name, _fill(tools, name, values), why)

        if not fresh or not history:
            return act("read_forum", "Let me see what the others have posted before I decide.")
        name, args, out, err = history[-1]
        if name == "read_forum":
            return act("list_methods", "Which methods can I run on this setting?")
        if name == "list_methods":
            methods = _methods(out) or list(tried) or ["baseline"]
            pick = min(methods, key=lambda m: (tried.get(m, 0), methods.index(m)))
            return act("describe_method", f"{pick} is the least explored so far; reading its "
                       "parameters before I spend a trial on it.", method=pick)
        if name == "describe_method":
            pick = args.get("method") or args.get("name")
            return act("run_trial", f"Running {pick} with default parameters on "
                       f"seeds {list(seeds)} so the scorer can compare it with the baseline.",
                       method=pick, params={}, seeds=list(seeds))
        if name == "run_trial":
            tid = None if err else _trial_id(out)
            if tid is None:
                return act("leaderboard", "That trial did not start; checking where we stand.")
            return act("trial_status", "Waiting for the trial.", trial_id=tid, wait_s=30)
        if name == "trial_status":
            state = str(_find(_json(out), lambda k: k in ("status", "state")) or out).lower()
            polls = sum(1 for n, a, _, _ in history if n == "trial_status" and a == args)
            tid = next((args[k] for k in ALIASES["trial_id"] if k in args), None)
            if any(w in state for w in DONE):
                return act("submit", "Done; submitting it to the scorer.", trial_id=tid)
            if any(w in state for w in FAILED) or polls >= max_polls:
                return act("list_methods", "That trial failed; moving on to another method.")
            return act("trial_status", "Still running.", trial_id=tid, wait_s=30)
        if name == "submit":
            tid = str(next((args[k] for k in ALIASES["trial_id"] if k in args), _trial_id(out)))
            pgr = _find(_json(out), lambda k: "pgr" in k)
            method = next((a.get("method") for n, a, o, _ in history
                           if n == "run_trial" and _trial_id(o) == tid), "a method")
            text = (f"Trial {tid} ({method}, default parameters, seeds {list(seeds)}): the scorer "
                    f"reports public PGR {pgr}. One configuration only; not yet replicated.")
            return act("post", "Reporting the result, citing the trial.", title=f"{method}: "
                       f"PGR {pgr}", text=text, trial_ids=[tid], kind="result")
        if name == "post":
            return act("write_notebook", "Noting this down.", text=f"Posted: {args}",
                       mode="append")
        if name == "leaderboard":
            return text_reply("I have no trials left to run; my results are posted.")
        return act("read_forum", "Back to the forum to see what changed.")

    return policy
