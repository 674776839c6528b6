"""The agents' tools: one definition per tool (name, description, JSON schema, handler), from
which the Claude `tools` list, the offline brain's view and input validation all come.

A tool never raises to the brain. `LabToolbox.call` is the one place where a failure is
classified (docs/testing.md, "Error taxonomy"):
  refusal    input that breaks the schema or a rule (`aar_ray.errors.Refusal`): its message,
             which says what to change;
  transient  Ray itself failed (an actor died or is restarting, a node, worker or object was
             lost, a call timed out): "retry later";
  internal   anything else, i.e. a bug: the agent gets an error id; the traceback, tool, agent
             and arguments go to the campaign's operations log, and a metric counts it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from ray import exceptions as ray_errors

from aar_ray.brains.base import ToolResult
from aar_ray.config import CampaignConfig, ConfigError
from aar_ray.errors import Refusal
from aar_ray.lab.forum import KINDS, MAX_BODY, MAX_CITES, MAX_TAG, MAX_TAGS, MAX_TITLE
from aar_ray.lab.reads import ReadRecord
from aar_ray.observe import metrics, operations
from aar_ray.sandbox import custom_methods

log = logging.getLogger(__name__)
MAX_NOTEBOOK = 100_000
MAX_MESSAGE = 400  # a schema error quotes the offending value, which may be 100 kB long

# Ray's own failures, after which the same call can succeed later (RayActorError covers
# ActorDiedError and ActorUnavailableError; ObjectLostError its owner- and fetch-lost kinds).
# What a remote method itself raised arrives as a RayTaskError and is judged by its cause.
TRANSIENT = (ray_errors.RayActorError, ray_errors.GetTimeoutError, ray_errors.ObjectLostError,
             ray_errors.NodeDiedError, ray_errors.WorkerCrashedError,
             ray_errors.LocalRayletDiedError, ray_errors.OutOfMemoryError,
             ray_errors.PendingCallsLimitExceeded)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]
    handler: Callable[..., Any]  # (toolbox, **args) -> JSON-able


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


TRIAL_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def classify(error: BaseException) -> tuple[str, BaseException]:
    """("refusal" | "transient" | "internal", the exception to report), unwrapping the
    RayTaskError in which Ray delivers what a remote method raised."""
    while isinstance(error, ray_errors.RayTaskError) and error.cause is not None:
        error = error.cause
    if isinstance(error, Refusal):
        return "refusal", error
    if isinstance(error, TRANSIENT):
        return "transient", error
    return "internal", error


def _unicode_problem(args: Any) -> str | None:
    """JSON may carry lone surrogates ("\\ud800"), which no file or database can store."""
    try:
        json.dumps(args, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError:
        return "input contains text that is not valid Unicode (a lone surrogate); send UTF-8"
    return None


def _schema_problem(name: str, args: Any) -> str | None:
    error = jsonschema.exceptions.best_match(VALIDATORS[name].iter_errors(args))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "input"
    message = error.message
    if len(message) > MAX_MESSAGE:  # keep both ends: the value's start and the rule broken
        message = message[:MAX_MESSAGE // 2] + " ... " + message[-MAX_MESSAGE // 2:]
    return f"invalid input for {name} at {where}: {message}"


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
        self.campaign_dir = self.workspace.parent.parent  # workspaces: <campaign>/agents/<id>
        self.calls = 0
        self.step: int | None = None  # the agent's saved step counter, set by its Researcher
        self._catalog: dict[str, dict[str, Any]] | None = None
        self.reads = ReadRecord(self.workspace / "reads.jsonl", custom_methods.TEMPLATE)

    def schemas(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description, "input_schema": t.schema}
                for t in TOOLS.values()]

    def call(self, name: str, args: Any) -> ToolResult:
        self.calls += 1
        t0 = time.perf_counter()
        result = self._dispatch(name, {} if args is None else args)
        seconds = time.perf_counter() - t0
        self.reads.saw(name, args, result.content)  # what reached the agent, for the copy check
        self._log(name, args, result, seconds)
        if not result.is_error:  # only known tools: no tag per misspelt name
            metrics.tool_latency(name, seconds)
        return result

    def _dispatch(self, name: str, args: Any) -> ToolResult:
        tool = TOOLS.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}; available: {sorted(TOOLS)}", True,
                              "refusal")
        problem = _unicode_problem(args) or _schema_problem(name, args)
        if problem:
            return ToolResult(problem, True, "refusal")
        try:
            return ToolResult(json.dumps(tool.handler(self, **args), default=str))
        except Exception as e:  # classified: the brain never sees a raise
            return self._failed(name, args, e)

    def _failed(self, name: str, args: dict[str, Any], error: Exception) -> ToolResult:
        kind, cause = classify(error)
        if kind == "refusal":
            return ToolResult(str(cause), True, kind)
        if kind == "transient":
            log.warning("tool %s unavailable for %s: %r", name, self.agent_id, cause)
            return ToolResult(f"{name} is temporarily unavailable ({type(cause).__name__}); "
                              "try again shortly", True, kind)
        log.error("tool %s: internal error for %s", name, self.agent_id, exc_info=error)
        metrics.tool_internal_error(name)
        try:
            ref = "recorded as " + operations.record(
                self.campaign_dir, "tool_internal_error", tool=name, agent=self.agent_id,
                args=operations.args_text(args), error=f"{type(cause).__name__}: {cause}",
                traceback="".join(traceback.format_exception(error)))
        except OSError:  # the log's own failure must not reach the brain either
            log.exception("operations log not written")
            ref = "not recorded (the operations log could not be written)"
        return ToolResult(f"internal error in {name} ({type(cause).__name__}), {ref}. This is "
                          "a bug in the lab, not a problem with your input, and the same call "
                          "will probably fail again: carry on with something else.", True, kind)

    def _log(self, name: str, args: Any, result: ToolResult, seconds: float) -> None:
        """Every call, its result (and error kind, if it failed) and latency: the agent's own
        record."""
        with open(self.workspace / "tool_calls.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), "tool": name, "args": args,
                                "result": result.content[:2000], "error": result.error,
                                "s": round(seconds, 5)}, default=str) + "\n")

    # ---- handlers ----------------------------------------------------------------------------

    def read_forum(self, query: str = "", tag: str = "", sort: str = "newest",
                   limit: int = 10) -> Any:
        return call(self.forum, "read", query, tag, sort, limit)

    def post(self, title: str, body: str, kind: str, tags: list[str] | None = None,
             cites: list[str] | None = None) -> Any:
        return call(self.forum, "post", self.agent_id, title, body, kind, tags, cites,
                    None, self._request_id("post", title, body, kind, tags, cites))

    def reply(self, post_id: int, body: str) -> Any:
        return call(self.forum, "reply", self.agent_id, post_id, body,
                    self._request_id("reply", post_id, body))

    def _request_id(self, *request: Any) -> str:
        """The same for the same request in the same step: an agent restarted from its saved
        state replays its unfinished step, and the forum and the queue drop the repeats."""
        when = f"s{self.step}" if self.step is not None else f"c{self.calls}"
        digest = hashlib.sha1(json.dumps(request, default=str).encode()).hexdigest()[:16]
        return f"{self.agent_id}:{when}:{digest}"

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
        copied = self.reads.copy_refusal(code)
        if copied:  # what others wrote is untrusted: a post must not make an agent run its code
            call(self.scorer, "record_event", self.agent_id, "", "forum_copy", copied)
            raise Refusal(copied)
        out = custom_methods.save(self.campaign_dir, self.agent_id, name, code,
                                  builtin=set(self.catalog()))
        return {**out, "note": f"run it with run_trial(method={out['method']!r}); it runs in "
                               "a sandbox: no files, processes, sockets or ctypes"}

    def run_trial(self, method: str, params: dict[str, Any] | None = None,
                  seeds: list[int] | None = None) -> Any:
        out = call(self.queue, "enqueue", self.agent_id, method, params or {}, seeds,
                   request_id=self._request_id("run_trial", method, params, seeds))
        with open(self.workspace / "trials.jsonl", "a") as f:
            f.write(json.dumps({"at": time.time(), "method": method, "params": params or {},
                                **out}) + "\n")
        return out

    def trial_status(self, trial_id: str, wait_s: float = 0) -> Any:
        return call(self.queue, "status", trial_id, self.agent_id, wait_s)

    def submit(self, trial_id: str) -> Any:
        status = call(self.queue, "status", trial_id, self.agent_id)
        if status["status"] != "done":
            raise Refusal(f"trial {trial_id} is {status['status']}"
                             + (f" ({status['error']})" if status["error"] else "")
                             + "; only finished trials can be submitted")
        out = call(self.scorer, "submit", trial_id, self.agent_id)
        if custom_methods.parse_id(status["method"]):  # every agent-written method submitted
            call(self.queue, "enqueue_control", trial_id)  # gets the teacher-use control
        return out

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
            raise Refusal(f"the notebook would exceed {MAX_NOTEBOOK} characters; "
                             "write a shorter summary with mode=replace")
        path.write_text(new)
        return {"chars": len(new)}


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("read_forum", "Read the shared forum: newest posts or top results, optionally "
         "filtered by text or tag. Cited trials show the scorer's numbers.",
         _obj({"query": {"type": "string", "maxLength": 200},
               "tag": {"type": "string", "maxLength": MAX_TAG},
               "sort": {"enum": ["newest", "top"]},
               "limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
         LabToolbox.read_forum),
    Tool("post", "Post to the forum. kind=result must cite the scored trial ids it reports.",
         _obj({"title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE},
               "body": {"type": "string", "minLength": 1, "maxLength": MAX_BODY},
               "kind": {"enum": list(KINDS)},
               "tags": {"type": "array", "items": {"type": "string", "maxLength": MAX_TAG},
                        "maxItems": MAX_TAGS},
               "cites": {"type": "array", "items": TRIAL_ID, "maxItems": MAX_CITES}},
              ("title", "body", "kind")),
         LabToolbox.post),
    Tool("reply", "Reply to a forum post.",
         _obj({"post_id": {"type": "integer", "minimum": 1, "maximum": 2**62},
               "body": {"type": "string", "minLength": 1, "maxLength": MAX_BODY}},
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
         "the given seeds (default: the first few campaign seeds; the reply lists every "
         "seed you may use). Re-run a promising configuration on seeds its first trial did "
         "not use before building on it: single runs are noisy. Returns a trial id.",
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
         "the rounded ΔPGR over the lab's vanilla baseline (same seeds, same test items) "
         "with its 95% CI and the rounded PGR, on a public part of the test set, shown only "
         "when ΔPGR beats your best by a margin; and `replicated`: whether the configuration, "
         "run on two or more seed sets by anyone, has a pooled ΔPGR whose CI is above 0 (None "
         "until re-run). Each agent has a limited number of submissions.",
         _obj({"trial_id": TRIAL_ID}, ("trial_id",)),
         LabToolbox.submit),
    Tool("leaderboard", "The scorer's public leaderboard (rounded ΔPGR over vanilla, as "
         "shown to each submitter).",
         _obj({"limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
         LabToolbox.leaderboard),
    Tool("read_notebook", "Read your private notebook.", _obj({}), LabToolbox.read_notebook),
    Tool("write_notebook", "Write to your private notebook (append or replace).",
         _obj({"text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTEBOOK},
               "mode": {"enum": ["append", "replace"]}}, ("text",)),
         LabToolbox.write_notebook),
]}
VALIDATORS = {name: jsonschema.validators.validator_for(t.schema)(t.schema)
              for name, t in TOOLS.items()}
