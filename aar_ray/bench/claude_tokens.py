"""Bench: does the Claude brain's prompt stay bounded over a 60-turn episode?

A `ClaudeBrain` drives the real `anthropic` SDK against `FakeAnthropic` playing
`researcher_policy()`, with a stand-in toolbox whose results are realistic-length JSON (forum
threads, method cards, trial metrics). It reports the prompt size (uncached + cache read + cache
write input tokens) at chosen turns, the turn-60 / turn-5 ratio (target <= 1.5, which compaction
has to deliver) and the share of prompt tokens read from the cache, for two compaction thresholds.
"""
from __future__ import annotations

import json
import time
from typing import Any

from aar_ray.brains.base import ToolResult
from aar_ray.brains.claude import ClaudeBrain
from aar_ray.config import BudgetConfig, ClaudeConfig
from aar_ray.lab.tools import TOOLS
from aar_ray.testing.fake_anthropic import FakeAnthropic

STEPS = 60
REPORT_AT = (1, 5, 10, 20, 30, 40, 50, 60)
# the shipped defaults, and compaction switched off for comparison
CONFIGS = {"default": {}, "no compaction": {"compact_after_tokens": 10**9,
                                            "compact_growth": 1e9,
                                            "compact_after_messages": 10**6}}
METHODS = ["baseline", "aux_confidence", "bootstrap", "early_stop", "label_smoothing",
           "confidence_filter", "ensemble_teachers", "generative_prior"]


class StandInToolbox:
    """Plausible tool results of realistic size; trials finish on their third status poll."""

    def __init__(self) -> None:
        self.trials: dict[str, dict[str, Any]] = {}
        self.notebook: list[str] = []
        self.calls: list[tuple[str, Any]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description,
                 "input_schema": t.schema} for t in TOOLS.values()]  # the real tools

    def call(self, name: str, args: Any) -> ToolResult:
        self.calls.append((name, args))
        if not isinstance(args, dict):
            return ToolResult("input must be a JSON object", is_error=True)
        handler = getattr(self, f"_{name}", None)
        return handler(args) if handler else ToolResult(f"unknown tool {name!r}", is_error=True)

    def _read_forum(self, args: dict) -> ToolResult:
        posts = [{"id": f"p{i}", "author": f"agent-{i % 9}", "title": f"{m}: mixed results",
                  "body": f"Tried {m} with default parameters on seeds [0, 1]; public PGR "
                  f"{0.1 + i / 40:.2f} against a baseline of 0.18. The gain is within seed noise "
                  "so far; next I will vary the strength parameter and replicate.",
                  "trial_ids": [f"t-{i:04d}"], "replies": i % 3}
                 for i, m in enumerate(METHODS)]
        return ToolResult(json.dumps({"posts": posts}))

    def _list_methods(self, args: dict) -> ToolResult:
        return ToolResult(json.dumps({"methods": [
            {"name": m, "summary": f"{m.replace('_', ' ')}: a W2S training variant that changes "
             "how the student weighs the weak labels."} for m in METHODS]}))

    def _describe_method(self, args: dict) -> ToolResult:
        return ToolResult(json.dumps({"name": args.get("method"), "description": "Trains the "
                          "strong student on weak labels with an extra term; see params.",
                          "params": {"alpha": {"type": "float", "range": [0, 1], "default": 0.5},
                                     "warmup": {"type": "float", "range": [0, 1],
                                                "default": 0.2}}}))

    def _run_trial(self, args: dict) -> ToolResult:
        tid = f"t-{len(self.trials) + 100:04d}"
        self.trials[tid] = {"method": args.get("method"), "polls": 0}
        return ToolResult(json.dumps({"trial_id": tid, "status": "queued",
                                      "trials_left": 60 - len(self.trials)}))

    def _trial_status(self, args: dict) -> ToolResult:
        trial = self.trials.get(str(args.get("trial_id")))
        if trial is None:
            return ToolResult("no such trial", is_error=True)
        trial["polls"] += 1
        done = trial["polls"] >= 3
        metrics = {"train_loss": [0.69, 0.52, 0.47, 0.45], "weak_label_agreement": 0.83,
                   "epochs": 30, "wall_s": 41.2} if done else {}
        return ToolResult(json.dumps({"trial_id": args.get("trial_id"),
                                      "status": "done" if done else "running", **metrics}))

    def _submit(self, args: dict) -> ToolResult:
        return ToolResult(json.dumps({"trial_id": args.get("trial_id"), "public_pgr": 0.31,
                                      "note": "rounded to 2 decimals; the private score is "
                                      "kept by the scorer", "submissions_left": 12}))

    def _post(self, args: dict) -> ToolResult:
        return ToolResult(json.dumps({"post_id": f"p{len(self.calls)}", "ok": True}))

    def _leaderboard(self, args: dict) -> ToolResult:
        return ToolResult(json.dumps([{"rank": i + 1, "agent": f"agent-{i}", "method": m,
                                       "public_pgr": round(0.4 - i / 30, 2)}
                                      for i, m in enumerate(METHODS)]))

    def _read_notebook(self, args: dict) -> ToolResult:
        return ToolResult("\n".join(self.notebook) or "(empty)")

    def _write_notebook(self, args: dict) -> ToolResult:
        self.notebook.append(str(args.get("text", "")))
        return ToolResult(json.dumps({"ok": True, "chars": sum(map(len, self.notebook))}))


def episode(overrides: dict[str, Any], steps: int = STEPS) -> ClaudeBrain:
    """One fake episode; returns the brain (usage, counters) for inspection."""
    with FakeAnthropic() as fake:
        cfg = ClaudeConfig(base_url=fake.base_url, max_retries=1, **overrides)
        brain = ClaudeBrain(cfg, BudgetConfig(steps_per_agent=steps), agent_id="agent-0",
                            direction="make the student distrust confident weak labels",
                            api_key="bench-not-a-key")
        tools = StandInToolbox()
        while brain.step(tools):
            pass
    return brain


def run() -> tuple[str, list[dict]]:
    t0 = time.perf_counter()
    brains = {t: episode(o) for t, o in CONFIGS.items()}
    cols = {t: t for t in CONFIGS}
    rows: list[dict] = []
    for s in REPORT_AT:
        rows.append({"metric": f"input tokens, turn {s}",
                     **{cols[t]: b.usage["step_input_tokens"][s - 1] for t, b in brains.items()}})
    per = {t: b.usage["step_input_tokens"] for t, b in brains.items()}
    rows.append({"metric": "ratio turn60/turn5 (target <= 1.5)",
                 **{cols[t]: round(p[59] / p[4], 2) for t, p in per.items()}})
    rows.append({"metric": "max / mean input tokens per turn",
                 **{cols[t]: f"{max(p)} / {sum(p) // len(p)}" for t, p in per.items()}})
    rows.append({"metric": "ratio max/turn5",
                 **{cols[t]: round(max(p) / p[4], 2) for t, p in per.items()}})
    for label, key in (("cache-read share of prompt tokens", "cache_read_input_tokens"),):
        rows.append({"metric": label, **{cols[t]: round(
            b.usage[key] / max(1, b.usage["input_tokens"] + b.usage["cache_read_input_tokens"]
                               + b.usage["cache_creation_input_tokens"]), 3)
            for t, b in brains.items()}})
    for key in ("compactions", "api_failures", "tool_errors"):
        rows.append({"metric": key, **{cols[t]: b.counters[key] for t, b in brains.items()}})
    rows.append({"metric": "dollars (claude-opus-5-5 prices)",
                 **{cols[t]: round(b.usage["dollars"], 3) for t, b in brains.items()}})
    title = (f"Claude brain prompt size over a {STEPS}-turn fake episode "
             f"({time.perf_counter() - t0:.1f}s, FakeAnthropic + researcher_policy)")
    return title, rows
