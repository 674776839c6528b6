"""The agents' tools: one definition per tool (name, description, JSON schema, handler), from
which the Claude `tools` list, the offline brain's view and input validation all come.

A tool never raises to the brain: bad input, refusals and dead actors come back as
`ToolResult(is_error=True)` with a message that says what to do instead.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from aar_ray.brains.base import ToolResult
from aar_ray.config import CampaignConfig, ConfigError
from aar_ray.observe import metrics
from aar_ray.sandbox import custom_methods

log = logging.getLogger(__name__)
MAX_NOTEBOOK = 100_000


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]
    handler: Callable[..., Any]  # (toolbox, **args) -> JSON-able


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


STR = {"type": "string"}
TRIAL_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def call(target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call a Ray actor handle or a plain object the same way (tests use plain objects)."""
    import ray

    fn = getattr(target, method)
    if hasattr(fn, "remote"):
        return ray.get(fn.remote(*args, **kwargs), timeout=900)
    return fn(*args, **kwargs)


class LabToolbox:
    """One agent's tools over the lab's actors (or plain objects with the same methods)."""

    def __init__(self, agent_id: str, workspace: Path, cfg: CampaignConfig, *, forum: Any,
                 scorer: Any, queue: Any) -> None:
        self.agent_id, self.workspace, self.cfg = agent_id, Path(workspace), cfg
        self.forum, self.scorer, self.queue = forum, scorer, queue
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.calls = 0
        self._catalog: dict[str, dict[str, Any]] | None = None

    def schemas(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description, "input_schema": t.schema}
                for t in TOOLS.values()]

    def call(self, name: str, args: Any) -> ToolResult:
        self.calls += 1
        tool = TOOLS.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}; available: {sorted(TOOLS)}", True)
        if args is None:
            args = {}
        try:
            jsonschema.validate(args, tool.schema)
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "input"
            return ToolResult(f"invalid input for {name} at {where}: {e.message}", True)
        t0 = time.perf_counter()
        try:
            out = tool.handler(self, **args)
        except (ConfigError, ValueError, PermissionError) as e:  # refusals with a message
            return ToolResult(str(getattr(e, "cause", None) or e), True)
        except Exception as e:  # a dead or restarting actor, a timeout: retry later
            log.warning("tool %s failed for %s: %r", name, self.agent_id, e)
            return ToolResult(f"{name} is temporarily unavailable ({type(e).__name__}); "
                              "try again shortly", True)
        text = json.dumps(out, default=str)
        self._log(name, args, text, time.perf_counter() - t0)
        metrics.tool_latency(name, time.perf_counter() - t0)
        return ToolResult(text)

    def _log(self, name: str, args: dict[str, Any], result: str, seconds: float) -> None:
        """Every successful call, its result and latency: the agent's own record."""
        with open(self.workspace / "tool_calls.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), "tool": name, "args": args,
                                "result": result[:2000], "s": round(seconds, 5)}) + "\n")

    # ---- handlers ----------------------------------------------------------------------------

    def read_forum(self, query: str = "", tag: str = "", sort: str = "newest",
                   limit: int = 10) -> Any:
        return call(self.forum, "read", query, tag, sort, limit)

    def post(self, title: str, body: str, kind: str, tags: list[str] | None = None,
             cites: list[str] | None = None) -> Any:
        return call(self.forum, "post", self.agent_id, title, body, kind, tags, cites,
                    None, self._request_id())

    def reply(self, post_id: int, body: str) -> Any:
        return call(self.forum, "reply", self.agent_id, post_id, body, self._request_id())

    def _request_id(self) -> str:
        # stable across a retried call after an actor restart: the forum drops the duplicate
        return f"{self.agent_id}:{self.calls}:{int(time.time() // 60)}"

    def catalog(self) -> dict[str, dict[str, Any]]:
        if self._catalog is None:
            self._catalog = call(self.queue, "method_catalog")
        return self._catalog

    def list_methods(self) -> Any:
        builtin = [{"name": n, "summary": d["summary"].split("\n\n")[0].replace("\n", " ")}
                   for n, d in sorted(self.catalog().items())]
        own = sorted((self.workspace / "methods").glob("*.py"))
        return builtin + [{"name": custom_methods.method_id(self.agent_id, p.stem),
                           "summary": "your own method"} for p in own]

    def describe_method(self, name: str) -> Any:
        catalog = self.catalog()
        if name not in catalog:
            raise ConfigError(f"unknown method {name!r}; allowed: {sorted(catalog)} (your own "
                              "methods are described by their source)")
        return catalog[name]

    def write_method(self, name: str, code: str) -> Any:
        out = custom_methods.save(self.workspace.parent.parent, self.agent_id, name, code,
                                  builtin=set(self.catalog()))
        return {**out, "note": f"run it with run_trial(method={out['method']!r}); it runs in "
                               "a sandbox: no files, processes, sockets or ctypes"}

    def run_trial(self, method: str, params: dict[str, Any] | None = None,
                  seeds: list[int] | None = None) -> Any:
        out = call(self.queue, "enqueue", self.agent_id, method, params or {}, seeds)
        with open(self.workspace / "trials.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), "method": method, "params": params or {},
                                **out}) + "\n")
        return out

    def trial_status(self, trial_id: str, wait_s: float = 0) -> Any:
        return call(self.queue, "status", trial_id, self.agent_id, wait_s)

    def submit(self, trial_id: str) -> Any:
        status = call(self.queue, "status", trial_id, self.agent_id)
        if status["status"] != "done":
            raise ValueError(f"trial {trial_id} is {status['status']}"
                             + (f" ({status['error']})" if status["error"] else "")
                             + "; only finished trials can be submitted")
        return call(self.scorer, "submit", trial_id, self.agent_id)

    def leaderboard(self, limit: int = 10) -> Any:
        return call(self.scorer, "leaderboard", "public", limit)

    def read_notebook(self) -> Any:
        path = self.workspace / "notebook.md"
        text = path.read_text() if path.exists() else ""
        return {"text": text[-20_000:], "chars": len(text)}

    def write_notebook(self, text: str, mode: str = "append") -> Any:
        path = self.workspace / "notebook.md"
        old = path.read_text() if path.exists() and mode == "append" else ""
        new = old + ("\n" if old else "") + text
        if len(new) > MAX_NOTEBOOK:
            raise ValueError(f"the notebook would exceed {MAX_NOTEBOOK} characters; "
                             "write a shorter summary with mode=replace")
        path.write_text(new)
        return {"chars": len(new)}


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("read_forum", "Read the shared forum: newest posts or top results, optionally "
         "filtered by text or tag. Cited trials show the scorer's numbers.",
         _obj({"query": {"type": "string", "maxLength": 200},
               "tag": {"type": "string", "maxLength": 40},
               "sort": {"enum": ["newest", "top"]},
               "limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
         LabToolbox.read_forum),
    Tool("post", "Post to the forum. kind=result must cite the scored trial ids it reports.",
         _obj({"title": {"type": "string", "minLength": 1, "maxLength": 200},
               "body": {"type": "string", "minLength": 1, "maxLength": 8000},
               "kind": {"enum": ["result", "hypothesis", "insight", "error"]},
               "tags": {"type": "array", "items": {"type": "string", "maxLength": 40},
                        "maxItems": 10},
               "cites": {"type": "array", "items": TRIAL_ID, "maxItems": 20}},
              ("title", "body", "kind")),
         LabToolbox.post),
    Tool("reply", "Reply to a forum post.",
         _obj({"post_id": {"type": "integer", "minimum": 1},
               "body": {"type": "string", "minLength": 1, "maxLength": 8000}},
              ("post_id", "body")),
         LabToolbox.reply),
    Tool("list_methods", "List the training methods you can run.", _obj({}),
         LabToolbox.list_methods),
    Tool("write_method", "Write your own method as Python source: one class subclassing "
         "aar_ray.w2s.methods.Method with a Params dataclass and run(ctx) returning test "
         "probabilities (see describe_method on a built-in for the interface). It runs in a "
         "sandbox that blocks files, processes, sockets and ctypes.",
         _obj({"name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,39}$"},
               "code": {"type": "string", "minLength": 1,
                        "maxLength": custom_methods.MAX_SOURCE}}, ("name", "code")),
         LabToolbox.write_method),
    Tool("describe_method", "A method's description and its parameters with allowed ranges.",
         _obj({"name": {"type": "string", "maxLength": 64}}, ("name",)),
         LabToolbox.describe_method),
    Tool("run_trial", "Queue a trial: train the student with a method on the weak labels, for "
         "the given seeds (default: all campaign seeds). Returns a trial id.",
         _obj({"method": {"type": "string", "maxLength": 64},
               "params": {"type": "object"},
               "seeds": {"type": "array", "items": {"type": "integer"}, "maxItems": 20}},
              ("method",)),
         LabToolbox.run_trial),
    Tool("trial_status", "A trial's status (queued, running, done, error); wait_s waits up to "
         "that many seconds for it to finish.",
         _obj({"trial_id": TRIAL_ID, "wait_s": {"type": "number", "minimum": 0,
                                               "maximum": 600}}, ("trial_id",)),
         LabToolbox.trial_status),
    Tool("submit", "Ask the scorer to score one of your finished trials. Feedback is coarse: "
         "a rounded PGR on a public part of the test set, shown only when it beats your "
         "best by a margin. Each agent has a limited number of submissions.",
         _obj({"trial_id": TRIAL_ID}, ("trial_id",)),
         LabToolbox.submit),
    Tool("leaderboard", "The scorer's public leaderboard (rounded PGR).",
         _obj({"limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
         LabToolbox.leaderboard),
    Tool("read_notebook", "Read your private notebook.", _obj({}), LabToolbox.read_notebook),
    Tool("write_notebook", "Write to your private notebook (append or replace).",
         _obj({"text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTEBOOK},
               "mode": {"enum": ["append", "replace"]}}, ("text",)),
         LabToolbox.write_notebook),
]}
