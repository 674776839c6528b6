"""ClaudeBrain through the real anthropic SDK against FakeAnthropic: no Ray, no network."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import anthropic
import pytest

from aar_ray import brains
from aar_ray.bench import claude_tokens
from aar_ray.brains.base import ToolResult
from aar_ray.brains.claude import ClaudeBrain, load_prompt
from aar_ray.brains.untrusted import fence, unfence
from aar_ray.config import BudgetConfig, CampaignConfig, ClaudeConfig, ConfigError
from aar_ray.testing.fake_anthropic import (
    FakeAnthropic,
    error_reply,
    serve_fake_claude,
    text_reply,
    tool_reply,
)

KEY = "sk-ant-test-DO-NOT-LEAK-0123456789"
TOOLS = ["read_forum", "post", "run_trial", "trial_status", "submit", "write_notebook"]


class ScriptedToolbox:
    """Answers each tool from a table; rejects non-dict input like the real toolbox; records."""

    def __init__(self, results: dict[str, str] | None = None, raise_on: str = "") -> None:
        self.results = {"read_forum": '{"posts": []}', "run_trial": '{"trial_id": "t-1"}',
                        "trial_status": '{"status": "done"}', "submit": '{"public_pgr": 0.4}',
                        "post": '{"ok": true}', "write_notebook": '{"ok": true}',
                        **(results or {})}
        self.raise_on = raise_on
        self.calls: list[tuple[str, Any]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return [{"name": n, "description": f"the {n} tool",
                 "input_schema": {"type": "object", "properties": {}}} for n in TOOLS]

    def call(self, name: str, args: Any) -> ToolResult:
        self.calls.append((name, args))
        if name == self.raise_on:
            raise RuntimeError(f"{name} exploded")
        if not isinstance(args, dict):
            return ToolResult("input must be a JSON object", is_error=True)
        return ToolResult(self.results[name])

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


def make_brain(fake: FakeAnthropic, budget: BudgetConfig | None = None, **cfg: Any
               ) -> ClaudeBrain:
    # scripted episodes check other behaviour: compaction only where a test asks for it
    cfg = {"max_retries": 2, "pause_s": 0.01, "compact_growth": 1e9, **cfg}
    return ClaudeBrain(ClaudeConfig(base_url=fake.base_url, **cfg), budget or BudgetConfig(),
                       agent_id="agent-3", direction="distrust confident weak labels",
                       api_key=KEY)


def results_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last user message."""
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


def test_prompt_template_is_package_data_and_filled() -> None:
    template = load_prompt()
    assert all(f"{{{k}}}" in template for k in ("agent_id", "direction", "budget"))
    with FakeAnthropic([]) as fake:
        brain = make_brain(fake, BudgetConfig(steps_per_agent=60, dollars_per_agent=2.5))
    assert "agent-3" in brain.system_prompt and "distrust confident" in brain.system_prompt
    assert "60 turns" in brain.system_prompt and "$2.50" in brain.system_prompt
    assert "{" not in brain.system_prompt


def test_research_episode_through_the_sdk() -> None:
    script = [tool_reply("read_forum", {}, "Reading the forum first."),
              tool_reply("run_trial", {"method": "aux_confidence", "params": {}, "seeds": [0]}),
              tool_reply("trial_status", {"trial_id": "t-1"}),
              tool_reply("submit", {"trial_id": "t-1"}),
              tool_reply("post", {"title": "aux", "body": "PGR 0.4 (t-1)", "trial_ids": ["t-1"]}),
              text_reply("Done for now.")]
    tools = ScriptedToolbox()
    with FakeAnthropic(script, min_cache_tokens=0) as fake:
        brain = make_brain(fake)
        assert all(brain.step(tools) for _ in range(6))
        bodies = fake.bodies
    assert tools.names() == ["read_forum", "run_trial", "trial_status", "submit", "post"]
    assert tools.calls[1][1] == {"method": "aux_confidence", "params": {}, "seeds": [0]}
    # each tool's result went back to the model, paired with its tool_use id
    # ... fenced off as untrusted data (prompt.md says what the fence means)
    assert results_in(bodies[1])[0]["content"] == fence("read_forum", '{"posts": []}')
    assert unfence(results_in(bodies[4])[0]["content"]) == '{"public_pgr": 0.4}'
    assert brain.counters["steps"] == 6 and brain.counters["nudges"] == 1
    assert brain.messages[-1]["content"][-1]["text"].startswith("Keep researching")
    assert len(brain.usage["step_input_tokens"]) == 6
    assert brain.usage["step_input_tokens"][5] > brain.usage["step_input_tokens"][0]
    assert brain.usage["dollars"] > 0 and brain.usage["calls"] == 6
    assert "temperature" not in bodies[0]  # API version 2026-10-21 rejects it


def test_cache_control_marks_the_stable_prefix() -> None:
    script = [tool_reply("read_forum", {}), tool_reply("read_forum", {})]
    with FakeAnthropic(script, min_cache_tokens=0) as fake:
        brain = make_brain(fake)
        brain.step(ScriptedToolbox())
        brain.step(ScriptedToolbox())
        first, second = fake.bodies
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert not any("cache_control" in t for t in first["tools"][:-1])
    assert second["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert not any("cache_control" in b for m in brain.messages for b in m["content"])
    assert brain.usage["cache_creation_input_tokens"] > 0  # the first call writes the prefix
    assert brain.usage["cache_read_input_tokens"] > 0  # the second reads it back


def test_retries_after_529_and_429_and_the_episode_goes_on() -> None:
    script = [error_reply(529), tool_reply("read_forum", {}),
              error_reply(429), error_reply(429), tool_reply("run_trial", {"method": "m"}),
              text_reply("ok")]
    tools = ScriptedToolbox()
    t0 = time.perf_counter()
    with FakeAnthropic(script) as fake:
        brain = make_brain(fake, max_retries=2)
        assert all(brain.step(tools) for _ in range(3))
        n_requests = len(fake.requests)
    assert time.perf_counter() - t0 < 5  # retry-after-ms: 10 was honoured, not 0.5 s backoff
    assert n_requests == 6 and tools.names() == ["read_forum", "run_trial"]
    assert brain.counters["api_failures"] == 0


def test_malformed_tool_use_gets_is_error_and_the_episode_goes_on() -> None:
    script = [tool_reply("run_trial", "method=aux please"),
              tool_reply("launch_rockets", {"count": 3}),
              tool_reply("read_forum", {}),
              tool_reply("read_forum", {})]
    tools = ScriptedToolbox(raise_on="")
    with FakeAnthropic(script) as fake:
        brain = make_brain(fake)
        assert brain.step(tools)
        tools.raise_on = "read_forum"
        assert all(brain.step(tools) for _ in range(3))
        bodies = fake.bodies
    bad_input, unknown, exploded = (results_in(b)[0] for b in bodies[1:4])
    assert bad_input["is_error"] and "JSON object" in bad_input["content"]
    assert tools.calls[0] == ("run_trial", "method=aux please")  # the toolbox judged it
    assert unknown["is_error"] and "launch_rockets" in unknown["content"]
    assert "launch_rockets" not in tools.names()
    assert exploded["is_error"] and "exploded" in exploded["content"]
    # the non-dict input was not echoed back to the API (the fake would answer 400)
    assert brain.counters["api_failures"] == 0 and brain.counters["tool_errors"] == 4


def test_refusal_empty_and_max_tokens_turns_are_survived() -> None:
    refusal = {"content": [{"type": "text", "text": "I can't"}], "stop_reason": "refusal",
               "stop_details": {"type": "refusal", "category": "frontier_llm"}}
    cut = tool_reply("post", {"title": "x"}, "A long explanation", stop_reason="max_tokens")
    script = [refusal, {"content": [], "stop_reason": "end_turn"}, cut,
              text_reply("rambling", stop_reason="max_tokens"), tool_reply("read_forum", {})]
    tools = ScriptedToolbox()
    with FakeAnthropic(script) as fake:
        brain = make_brain(fake)
        assert all(brain.step(tools) for _ in range(5))
        bodies = fake.bodies
    c = brain.counters
    assert (c["refusals"], c["empty"], c["max_tokens"], c["api_failures"]) == (1, 1, 2, 0)
    assert not any(b.get("text") == "I can't" for m in bodies[2]["messages"]
                   for b in m["content"])  # the refused turn was dropped
    cut_result = results_in(bodies[3])[0]
    assert cut_result["is_error"] and "output limit" in cut_result["content"]
    assert tools.names() == ["read_forum"]  # the truncated post was never run


def test_repeated_api_failures_pause_then_resume(caplog: pytest.LogCaptureFixture) -> None:
    script = [error_reply(500), error_reply(500), error_reply(500),
              tool_reply("read_forum", {})]
    tools = ScriptedToolbox()
    with FakeAnthropic(script) as fake, caplog.at_level(logging.WARNING):
        brain = make_brain(fake, max_retries=0, pause_after_failures=2, pause_s=0.01)
        assert all(brain.step(tools) for _ in range(4))
    c = brain.counters
    assert (c["api_failures"], c["pauses"], c["consecutive_failures"]) == (3, 1, 0)
    assert tools.names() == ["read_forum"] and c["steps"] == 1
    assert "pausing" in caplog.text and KEY not in caplog.text
    assert "InternalServerError 500" in brain.last_error


def test_pause_is_interruptible() -> None:
    with FakeAnthropic([error_reply(500)]) as fake:
        brain = make_brain(fake, max_retries=0, pause_after_failures=1, pause_s=30)
        threading.Timer(0.2, brain.wake).start()
        t0 = time.perf_counter()
        assert brain.step(ScriptedToolbox())
    assert time.perf_counter() - t0 < 10 and brain.counters["pauses"] == 1


def test_unreachable_api_counts_failures_without_raising() -> None:
    with FakeAnthropic([]) as fake:
        url = fake.base_url
    brain = ClaudeBrain(ClaudeConfig(base_url=url, max_retries=0, pause_s=0,
                                     timeout_s=2), BudgetConfig(), agent_id="a",
                        direction="d", api_key=KEY)
    assert brain.step(ScriptedToolbox()) and brain.counters["api_failures"] == 1
    assert "APIConnectionError" in brain.last_error


def test_bad_key_stops_the_brain() -> None:
    with FakeAnthropic([error_reply(401, retry_after_ms=None)]) as fake:
        brain = make_brain(fake)
        assert brain.step(ScriptedToolbox()) is False
    assert brain.stopped == "api" and KEY not in json.dumps(brain.state_dict())


def test_missing_key_stops_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with FakeAnthropic([]) as fake:
        brain = ClaudeBrain(ClaudeConfig(base_url=fake.base_url), BudgetConfig(),
                            agent_id="a", direction="d")
        assert brain.step(ScriptedToolbox()) is False
    assert brain.stopped == "error" and "authentication" in brain.last_error


@pytest.mark.parametrize("budget", [BudgetConfig(tokens_per_agent=4000),
                                    BudgetConfig(dollars_per_agent=0.01)])
def test_budget_stops_cleanly_and_state_restores(budget: BudgetConfig) -> None:
    tools = ScriptedToolbox()
    with FakeAnthropic(None) as fake:  # researcher_policy plays the model
        brain = make_brain(fake, budget)
        steps = 0
        while brain.step(tools):
            steps += 1
            assert steps < 50
        state = json.loads(json.dumps(brain.state_dict()))  # what the actor writes to disk
        assert brain.stopped in ("tokens", "dollars") and not brain.step(tools)
        assert brain.tokens_used >= budget.tokens_per_agent
        assert brain.usage["dollars"] >= budget.dollars_per_agent
        resumed = make_brain(fake, BudgetConfig())
        resumed.load_state_dict(state)
        n_before = len(fake.requests)
        assert resumed.step(tools)
        body = fake.bodies[n_before]
    sent = [{k: v for k, v in b.items() if k != "cache_control"}
            for m in body["messages"] for b in m["content"]]
    saved = [b for m in state["messages"] for b in m["content"]]
    assert sent[:len(saved)] == saved  # it picked up mid-episode, history intact
    assert resumed.counters["steps"] == state["counters"]["steps"] + 1


def test_unknown_model_price_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with FakeAnthropic([tool_reply("read_forum", {})] * 2) as fake, \
            caplog.at_level(logging.WARNING):
        brain = make_brain(fake, BudgetConfig(dollars_per_agent=0.0001), model="claude-next")
        assert brain.step(ScriptedToolbox()) and brain.step(ScriptedToolbox())
    assert brain.usage["dollars"] == 0 and caplog.text.count("no price for model") == 1


def test_compaction_bounds_memory_and_writes_the_notebook() -> None:
    tools = claude_tokens.StandInToolbox()
    with FakeAnthropic(None) as fake:
        brain = make_brain(fake, BudgetConfig(steps_per_agent=40), compact_after_tokens=3000)
        while brain.step(tools):
            pass
        bodies = fake.bodies
    c = brain.counters
    assert c["steps"] == 40 and c["compactions"] >= 2 and c["api_failures"] == 0
    assert max(brain.usage["step_input_tokens"][10:]) < 3000 + 1000
    notes = [a for n, a in tools.calls if n == "write_notebook" and "context summary" in
             a.get("text", "")]
    assert len(notes) == c["compactions"] and all(a["mode"] == "append" for a in notes)
    assert "Methods tried:" in notes[0]["text"]
    summaries = [b for b in bodies if (b.get("tool_choice") or {}).get("type") == "none"]
    assert len(summaries) == c["compactions"]
    head = brain.messages[0]["content"][0]["text"]
    assert head.startswith("Summary of your work")  # and the summary in it fenced, as it may
    assert '<untrusted_data source="context_summary">\nSummary of my research' in head  # quote
    assert head.endswith("</untrusted_data>\n\nContinue your research from here.")  # posts
    # methods keep rotating across compactions (the policy read the summaries)
    assert len({a["method"] for n, a in tools.calls if n == "run_trial"}) >= 4


def test_api_key_never_in_state() -> None:
    script = [error_reply(500), tool_reply("read_forum", {})]
    with FakeAnthropic(script) as fake:
        brain = make_brain(fake, max_retries=0)
        brain.step(ScriptedToolbox(raise_on="read_forum"))
        brain.step(ScriptedToolbox(raise_on="read_forum"))
        headers = fake.requests[0]["headers"]
    assert KEY in json.dumps(headers)  # it was sent...
    state = json.dumps(brain.state_dict())
    assert KEY not in state and KEY not in repr(brain.__dict__.get("last_error"))


def test_default_settings_keep_the_prompt_bounded() -> None:
    """With the shipped defaults the prompt never grows past (1 + compact_growth) x its
    post-summary size, plus one turn: input tokens per step stay flat over a long episode."""
    title, rows = claude_tokens.run()
    by = {r["metric"]: r for r in rows}
    assert by["ratio turn60/turn5 (target <= 1.5)"]["default"] <= 1.5
    assert by["ratio max/turn5"]["default"] <= 1.5
    assert by["ratio turn60/turn5 (target <= 1.5)"]["no compaction"] > 2  # it is compaction
    assert all(v == 0 for k, v in by["api_failures"].items() if k != "metric")
    assert "60-turn" in title


def test_anthropic_errors_are_the_sdk_classes() -> None:
    with FakeAnthropic([error_reply(529, retry_after_ms=None)]) as fake:
        client = anthropic.Anthropic(base_url=fake.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(model="m", max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])


def test_a_fake_claude_brain_gets_its_fake_from_whoever_starts_the_campaign():
    """The brain factory starts no fake: it refuses `fake-claude` without an address, and the
    starter's `serve_fake_claude` gives it one (replacing a resumed campaign's stale one)."""
    cfg = CampaignConfig(brain="fake-claude")
    with pytest.raises(ConfigError, match="needs claude.base_url"):
        brains.make_brain(cfg, "agent-0", "d", 0)
    cfg.claude.base_url = "http://127.0.0.1:9"  # a stopped campaign's fake
    assert serve_fake_claude(cfg) and cfg.claude.base_url != "http://127.0.0.1:9"
    assert not serve_fake_claude(cfg)  # already pointed at this process's fake
    brain = brains.make_brain(cfg, "agent-0", "d", 0)
    assert str(brain.client.base_url).rstrip("/") == cfg.claude.base_url
    offline = CampaignConfig(brain="offline")
    assert not serve_fake_claude(offline) and offline.claude.base_url == ""
