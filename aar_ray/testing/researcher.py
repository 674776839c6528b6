"""A scripted model that plays a plausible researcher from its request alone: the default script
of `FakeAnthropic`, used by the tests and the offline `fake-claude` demo.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aar_ray.brains.base import ToolResult
from aar_ray.testing.messages import Spec, content_blocks, find, text_reply, tool_reply, transcript

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


def _methods(text: str) -> list[str]:
    data = ToolResult(text).data()
    if isinstance(data, dict):
        data = data.get("methods", list(data))
    if isinstance(data, list):
        names = [d if isinstance(d, str) else (d or {}).get("name") for d in data]
        return [n for n in names if isinstance(n, str)]
    return re.findall(r"^\W*([a-z][a-z0-9_]+)", text or "", re.M)


def _trial_id(text: str) -> str | None:
    found = find(ToolResult(text).data(), lambda k: k in ("trial_id", "id"))
    if found is not None:
        return str(found)
    m = re.search(r"trial[_ ]?id\W+([\w.-]+)", text or "")
    return m.group(1) if m else None


def _tried(messages: list[dict[str, Any]], history: list[tuple]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for msg in messages:  # earlier context survives compaction as "Methods tried: a, b" lines
        for b in content_blocks(msg.get("content")):
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
        history, fresh = transcript(req["messages"])
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
            state = find(ToolResult(out).data(), lambda k: k in ("status", "state"))
            state = str(state or out).lower()
            polls = sum(1 for n, a, _, _ in history if n == "trial_status" and a == args)
            tid = next((args[k] for k in ALIASES["trial_id"] if k in args), None)
            if any(w in state for w in DONE):
                return act("submit", "Done; submitting it to the scorer.", trial_id=tid)
            if any(w in state for w in FAILED) or polls >= max_polls:
                return act("list_methods", "That trial failed; moving on to another method.")
            return act("trial_status", "Still running.", trial_id=tid, wait_s=30)
        if name == "submit":
            tid = str(next((args[k] for k in ALIASES["trial_id"] if k in args), _trial_id(out)))
            pgr = find(ToolResult(out).data(), lambda k: "pgr" in k)
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
