"""The Claude brain: one Messages API turn per `step`, every action taken through the Toolbox.

Why it is shaped this way:
- The SDK's own retries (backoff, `retry-after`) handle 429/529/5xx/timeouts; an error that
  survives them is counted, and after `pause_after_failures` in a row the brain pauses and goes on,
  so a long API outage stalls an agent instead of killing its actor.
- The prompt prefix (tools, then system) carries `cache_control` and never changes during an
  episode; a moving breakpoint on the newest message lets each turn read the previous one's cache.
- Memory is bounded: past `compact_after_tokens` (or `compact_after_messages`) the model writes a
  summary, the summary goes to the notebook, and the conversation restarts from it (fenced as
  untrusted data, like the tool results it came from) plus the latest tool exchange (kept
  whole, so no tool_use is ever separated from its tool_result).
- API version 2026-10-21 (SDK 2.x) rejects `temperature`: no sampling parameter is sent.
"""
from __future__ import annotations

import copy
import json
import logging
import threading
from importlib import resources
from typing import Any

import anthropic

from aar_ray.brains import untrusted
from aar_ray.brains.base import USAGE_KEYS, Toolbox, ToolResult
from aar_ray.config import BudgetConfig, ClaudeConfig

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}
STATE_VERSION = 1
NUDGE = ("Keep researching: act through your tools (run a trial, check its status, read the "
         "forum, post a result that cites its trial ids).")
REFUSAL_NUDGE = "That turn was dropped. " + NUDGE
MAX_TOKENS_NUDGE = "Your reply was cut off at the output limit. Be brief, then call a tool."
SUMMARY_REQUEST = (
    "Your conversation is about to be condensed. Write a summary for your own notebook: the "
    "methods and parameters you tried with their trial ids and the scores the scorer reported, "
    "what you posted, what you learned, open questions and your next step. Plain text, under "
    "300 words; you will continue from this summary.")
RESUME = "Continue your research from here."
SUMMARY_SOURCE = "context_summary"
# A bad key, missing permission or unknown model will not heal by waiting.
FATAL = (anthropic.AuthenticationError, anthropic.PermissionDeniedError, anthropic.NotFoundError)
HEALED_BY_COMPACTION = (anthropic.BadRequestError, anthropic.ContentTooLargeError)


def load_prompt() -> str:
    """The system prompt template shipped as package data."""
    return resources.files("aar_ray.brains").joinpath("prompt.md").read_text(encoding="utf-8")


def describe_budget(budget: BudgetConfig) -> str:
    parts = [f"{budget.steps_per_agent} turns" if budget.steps_per_agent else "",
             f"{budget.trials_per_agent} trials" if budget.trials_per_agent else "",
             f"{budget.tokens_per_agent:,} tokens" if budget.tokens_per_agent else "",
             f"${budget.dollars_per_agent:.2f}" if budget.dollars_per_agent else ""]
    return ", ".join(p for p in parts if p) or "no fixed limit; spend it as if it were scarce"


def render_prompt(template: str, *, agent_id: str, direction: str, budget: str) -> str:
    """Fill only the three named fields, so braces elsewhere in the template are safe."""
    for key, value in (("agent_id", agent_id), ("direction", direction), ("budget", budget)):
        template = template.replace("{" + key + "}", value)
    return template


def carried(summary: str) -> str:
    """A compaction's summary as the new conversation carries it: fenced. The model wrote it,
    but from what it read (posts, errors, other agents' code), and it may quote that; unfenced
    in the first user message, a quoted instruction would read as the user's."""
    return untrusted.fence(SUMMARY_SOURCE, summary)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def block_to_dict(block: Any) -> dict[str, Any]:
    """A response content block as the JSON-able param the next request sends back."""
    if isinstance(block, dict):
        return copy.deepcopy(block)
    kind = _get(block, "type")
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(mode="json", exclude_none=True)  # thinking etc.: sent back unchanged


def _add_text_to(messages: list[dict[str, Any]], text: str) -> None:
    """Say something to the model without breaking user/assistant alternation."""
    block = {"type": "text", "text": text}
    if messages and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        content = [{"type": "text", "text": content}] if isinstance(content, str) else content
        messages[-1]["content"] = [*content, block]
    else:
        messages.append({"role": "user", "content": [block]})


def new_usage() -> dict[str, Any]:
    return {**dict.fromkeys(USAGE_KEYS, 0), "dollars": 0.0, "calls": 0, "last_input_tokens": 0,
            "step_input_tokens": []}  # prompt tokens (uncached + cache read + write) per step


COUNTERS = ("steps", "tool_calls", "tool_errors", "nudges", "refusals", "empty", "max_tokens",
            "api_failures", "consecutive_failures", "pauses", "compactions")


class ClaudeBrain:
    """Implements `Brain` with the Anthropic Messages API (see the module docstring)."""

    def __init__(self, cfg: ClaudeConfig, budget: BudgetConfig, *, agent_id: str, direction: str,
                 api_key: str | None = None, client: Any = None) -> None:
        self.cfg, self.budget, self.agent_id, self.direction = cfg, budget, agent_id, direction
        self.client = client or anthropic.Anthropic(
            api_key=api_key, base_url=cfg.base_url or None, max_retries=cfg.max_retries,
            timeout=cfg.timeout_s)
        key = api_key or getattr(self.client, "api_key", None)
        self._secrets = tuple(s for s in (key,) if isinstance(s, str) and len(s) >= 6)
        self.system_prompt = render_prompt(load_prompt(), agent_id=agent_id, direction=direction,
                                           budget=describe_budget(budget))
        kickoff = f"You are {agent_id}. Begin with your direction: {direction}"
        self.messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": kickoff}]}]
        self.usage = new_usage()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.stopped = ""  # why step returned False: steps, tokens, dollars, api or error
        self.last_error = ""
        self._force_compact = False
        self._warned_price = False
        self._wake = threading.Event()
        self._tool_names: set[Any] = set()
        self._sent = 0  # how many messages the last answered request held

    # ---- the Brain protocol ------------------------------------------------------------------

    def step(self, tools: Toolbox) -> bool:
        """One model turn and the tool calls it asks for; False once a budget is spent."""
        if self._exhausted():
            return False
        schemas = self._tool_defs(tools)
        try:
            if self._needs_compaction():
                self._compact(tools, schemas)
            response = self._create(schemas, self._with_breakpoint(self.messages))
        except FATAL as e:
            self.stopped = "api"
            self.last_error = self._describe(e)
            log.error("%s: stopping, the API refused the request: %s", self.agent_id,
                      self.last_error)
            return False
        except anthropic.APIError as e:
            self._failed(e)
            return True
        except Exception as e:  # e.g. no API key configured: the SDK raises TypeError
            self.stopped, self.last_error = "error", self._describe(e)
            log.error("%s: stopping on an unexpected error: %s", self.agent_id, self.last_error)
            return False
        self.counters["consecutive_failures"] = 0
        self._sent = len(self.messages)
        self._account(_get(response, "usage"), step=True)
        self._handle(response, tools)
        self.counters["steps"] += 1
        return not self._exhausted()

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "agent_id": self.agent_id, "model": self.cfg.model,
                "messages": copy.deepcopy(self.messages), "usage": copy.deepcopy(self.usage),
                "counters": dict(self.counters), "stopped": self.stopped,
                "last_error": self.last_error, "force_compact": self._force_compact,
                "sent_messages": self._sent}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"brain state version {state.get('version')!r}, "
                             f"expected {STATE_VERSION}")
        messages = state.get("messages") or []
        if messages and messages[0].get("role") != "user":
            raise ValueError("brain state: messages must start with a user message")
        self.messages = copy.deepcopy(messages) or self.messages
        self.usage = {**new_usage(), **copy.deepcopy(state.get("usage") or {})}
        self.counters = {**dict.fromkeys(COUNTERS, 0), **(state.get("counters") or {})}
        self.last_error = state.get("last_error", "")
        self._force_compact = bool(state.get("force_compact"))
        self._sent = min(int(state.get("sent_messages") or 0), len(self.messages))
        self.stopped = ""  # a restored brain re-checks its (possibly new) budget

    def wake(self) -> None:
        """Cut a pause short (e.g. when the actor is asked to stop)."""
        self._wake.set()

    @property
    def tokens_used(self) -> int:
        return sum(self.usage[k] for k in USAGE_KEYS)

    # ---- one turn ----------------------------------------------------------------------------

    def _exhausted(self) -> bool:
        b = self.budget
        for reason, limit, spent in (("steps", b.steps_per_agent, self.counters["steps"]),
                                     ("tokens", b.tokens_per_agent, self.tokens_used),
                                     ("dollars", b.dollars_per_agent, self.usage["dollars"])):
            if limit and spent >= limit:  # 0 = unlimited
                self.stopped = reason
        return bool(self.stopped)

    def _tool_defs(self, tools: Toolbox) -> list[dict[str, Any]]:
        try:
            schemas = [dict(s) for s in tools.schemas()]
        except Exception as e:  # a broken toolbox leaves the model tool-less, not the actor dead
            log.error("%s: tools.schemas() failed: %s", self.agent_id, self._describe(e))
            schemas = []
        if schemas:
            schemas[-1]["cache_control"] = CACHE
        self._tool_names = {s.get("name") for s in schemas}
        return schemas

    def _create(self, schemas: list[dict[str, Any]], messages: list[dict[str, Any]],
                **extra: Any) -> Any:
        if schemas:
            extra["tools"] = schemas
        return self.client.messages.create(
            model=self.cfg.model, max_tokens=self.cfg.max_tokens, messages=messages,
            system=[{"type": "text", "text": self.system_prompt, "cache_control": CACHE}], **extra)

    @staticmethod
    def _with_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy whose newest block is a cache breakpoint, so the next turn reads this prefix."""
        last = messages[-1]
        content = last["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        if blocks and last["role"] == "user":  # (an assistant turn may end in a thinking block)
            blocks[-1] = {**blocks[-1], "cache_control": CACHE}
        return [*messages[:-1], {**last, "content": blocks}]

    def _handle(self, response: Any, tools: Toolbox) -> None:
        stop = _get(response, "stop_reason")
        raw = list(_get(response, "content") or [])
        if stop == "refusal":  # a refused turn is dropped: kept, it tends to repeat
            self.counters["refusals"] += 1
            details = _get(response, "stop_details")
            log.warning("%s: the model refused (category %s); nudging", self.agent_id,
                        _get(details, "category") if details is not None else None)
            _add_text_to(self.messages, REFUSAL_NUDGE)
            return
        if not raw:
            self.counters["empty"] += 1
            _add_text_to(self.messages, NUDGE)
            return
        content = [block_to_dict(b) for b in raw]
        inputs = {}
        for b in content:
            if b.get("type") == "tool_use":
                inputs[b.get("id")] = b.get("input")
                if not isinstance(b.get("input"), dict):  # the API only accepts objects back
                    b["input"] = {}
        self.messages.append({"role": "assistant", "content": content})
        uses = [b for b in content if b.get("type") == "tool_use"]
        if stop == "max_tokens":
            self.counters["max_tokens"] += 1
        if uses:
            results = [self._run_tool(tools, b, inputs[b.get("id")],
                                      truncated=stop == "max_tokens" and b is uses[-1])
                       for b in uses]
            self.messages.append({"role": "user", "content": results})
        elif stop == "pause_turn":
            return  # a server-side pause: sending the turn back as it is continues it
        elif stop in ("max_tokens", "model_context_window_exceeded"):
            self._force_compact = stop != "max_tokens"
            _add_text_to(self.messages, MAX_TOKENS_NUDGE)
        else:
            self.counters["nudges"] += 1
            _add_text_to(self.messages, NUDGE)

    def _run_tool(self, tools: Toolbox, block: dict[str, Any], args: Any, *, truncated: bool
                  ) -> dict[str, Any]:
        name = block.get("name")
        known = self._tool_names
        if truncated:
            result = ToolResult("Not run: your reply hit the output limit before this call was "
                                "complete. Send it again.", is_error=True)
        elif known and name not in known:
            result = ToolResult(f"Unknown tool {name!r}; your tools are: "
                                f"{', '.join(sorted(k for k in known if k))}.", is_error=True)
        else:
            try:
                result = tools.call(str(name), args)
            except Exception as e:  # the toolbox promises not to raise; the brain survives anyway
                result = ToolResult(f"Tool {name!r} failed: {self._describe(e)}", is_error=True)
        text = _get(result, "content")
        text = text if isinstance(text, str) else json.dumps(text, default=str)
        limit = self.cfg.max_tool_result_chars
        cut = f"\n[... cut: {len(text) - limit} more characters]" if len(text) > limit else ""
        text = untrusted.fence(str(name), text[:limit]) + cut  # data, never instructions
        is_error = bool(_get(result, "is_error"))
        self.counters["tool_calls"] += 1
        self.counters["tool_errors"] += is_error
        out = {"type": "tool_result", "tool_use_id": block.get("id"), "content": text or "(empty)"}
        return {**out, "is_error": True} if is_error else out

    # ---- failures, cost and memory -----------------------------------------------------------

    def _describe(self, e: BaseException) -> str:
        status = getattr(e, "status_code", None)
        text = f"{type(e).__name__}" + (f" {status}" if status else "") + f": {e}"
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text[:500]

    def _failed(self, e: anthropic.APIError) -> None:
        c = self.counters
        c["api_failures"] += 1
        c["consecutive_failures"] += 1
        self.last_error = self._describe(e)
        if isinstance(e, HEALED_BY_COMPACTION):
            self._force_compact = True
        log.warning("%s: API call failed after retries (%d in a row): %s", self.agent_id,
                    c["consecutive_failures"], self.last_error)
        if c["consecutive_failures"] >= self.cfg.pause_after_failures:
            c["pauses"] += 1
            c["consecutive_failures"] = 0
            log.warning("%s: pausing %.1fs before trying again", self.agent_id, self.cfg.pause_s)
            self._wake.wait(self.cfg.pause_s)
            self._wake.clear()

    def _account(self, usage: Any, *, step: bool) -> None:
        n = [int(_get(usage, k) or 0) if usage is not None else 0 for k in USAGE_KEYS]
        u = self.usage
        for key, value in zip(USAGE_KEYS, n, strict=True):
            u[key] += value
        u["calls"] += 1
        u["last_input_tokens"] = n[0] + n[2] + n[3]  # what the model read, cached or not
        if step:
            u["step_input_tokens"].append(u["last_input_tokens"])
            if not u.get("baseline_tokens"):  # the first prompt since the start or a compaction
                u["baseline_tokens"] = u["last_input_tokens"]
        price = self.cfg.prices.get(self.cfg.model)
        if price is not None:
            u["dollars"] += sum(p * k for p, k in zip(price, n, strict=True)) / 1e6
        elif not self._warned_price:
            self._warned_price = True
            log.warning("%s: no price for model %r; dollar budget not enforced", self.agent_id,
                        self.cfg.model)

    def _needs_compaction(self) -> bool:
        if len(self.messages) < 3:
            return False
        if self._force_compact:
            return True
        # the next prompt: the last one plus what was appended since (≈ 4 characters a token)
        added = json.dumps(self.messages[self._sent:], default=str)
        projected = self.usage["last_input_tokens"] + len(added) // 4
        # bounded memory: the prompt may grow to (1 + compact_growth) x its size right after
        # the last compaction, and never past compact_after_tokens
        grown = self.usage.get("baseline_tokens", 0) * (1 + self.cfg.compact_growth)
        return len(self.messages) >= 5 and (
            projected > min(self.cfg.compact_after_tokens, grown or float("inf"))
            or len(self.messages) > self.cfg.compact_after_messages)

    def _compact(self, tools: Toolbox, schemas: list[dict[str, Any]]) -> None:
        """Summarise into the notebook; restart from the summary plus the last tool exchange."""
        forced, self._force_compact = self._force_compact, False
        tail: list[dict[str, Any]] = []  # after a 400 the newest turn may be the culprit: drop it
        if (not forced and self.messages[-1]["role"] == "user" and len(self.messages) >= 3
                and self.messages[-2]["role"] == "assistant"):
            tail = self.messages[-2:]
        request = copy.deepcopy(self.messages)
        _add_text_to(request, SUMMARY_REQUEST)
        summary = ""
        try:  # tools must be defined while tool blocks are in the history; "none" forbids calls
            response = self._create(schemas, self._with_breakpoint(request),
                                    **({"tool_choice": {"type": "none"}} if schemas else {}))
            self._account(_get(response, "usage"), step=False)
            summary = "\n".join(str(_get(b, "text")) for b in _get(response, "content") or []
                                if _get(b, "type") == "text").strip()
        except FATAL:
            raise
        except anthropic.APIError as e:
            self._failed(e)
        if not summary:
            summary = self._fallback_summary()
        self.counters["compactions"] += 1
        note = f"[{self.agent_id}, turn {self.counters['steps']}] context summary\n{summary}"
        try:
            result = tools.call("write_notebook", {"text": note, "mode": "append"})
            problem = str(_get(result, "content"))[:200] if _get(result, "is_error") else ""
        except Exception as e:
            problem = self._describe(e)
        if problem:  # the summary still lives on in the conversation
            log.warning("%s: write_notebook failed: %s", self.agent_id, problem)
        head = {"role": "user", "content": [{"type": "text", "text": (
            f"Summary of your work so far (also in your notebook):\n{carried(summary)}\n\n"
            f"{RESUME}")}]}
        self.messages = [head, *tail]
        self.usage["last_input_tokens"], self._sent = 0, 0
        self.usage["baseline_tokens"] = 0

    def _fallback_summary(self) -> str:
        """When the model cannot summarise: its own recent words, mechanically."""
        texts = [b.get("text", "") for m in self.messages if m["role"] == "assistant"
                 for b in m["content"] if isinstance(b, dict) and b.get("type") == "text"]
        recent = "\n".join(t for t in texts[-8:] if t)[-3000:]
        return ("(Automatic summary; the model could not write one.) Your recent notes:\n"
                + (recent or "(none)") + "\nRead your notebook for earlier summaries.")
