"""The error taxonomy at the tool boundary: refusal, transient (Ray's own failures), internal
(a bug: recorded in the operations log, counted, shown by `aar status` and the report), and a
real campaign in which a tool handler raises KeyError and the campaign finishes."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import ray
from ray import exceptions as ray_errors

from aar_ray import report, status
from aar_ray.config import CampaignConfig, ConfigError, ConfirmConfig, save_campaign
from aar_ray.errors import Refusal
from aar_ray.lab import tools as tools_mod
from aar_ray.lab.forum import ForumError
from aar_ray.lab.scorer import ScoreError
from aar_ray.lab.tools import LabToolbox, classify
from aar_ray.lab.trials import TrialError
from aar_ray.observe import metrics, operations


def remote(cause: Exception) -> Exception:
    """What `ray.get` raises when a remote method raised `cause`."""
    return ray_errors.RayTaskError("f", "Traceback (remote)...", cause).as_instanceof_cause()


@pytest.mark.parametrize("error, kind", [
    (TrialError("no trial 't1' of yours"), "refusal"),
    (ConfigError("x: out of range"), "refusal"),
    (ScoreError("budget used up"), "refusal"),
    (ForumError("body too long"), "refusal"),
    (Refusal("a rule"), "refusal"),
    (remote(TrialError("no trial 't1' of yours")), "refusal"),
    (ray_errors.ActorDiedError(), "transient"),
    (ray_errors.ActorUnavailableError("restarting", None), "transient"),
    (ray_errors.GetTimeoutError("900 s"), "transient"),
    (ray_errors.ObjectLostError("ab" * 14, None, ""), "transient"),
    (ray_errors.OwnerDiedError("ab" * 14, None, ""), "transient"),
    (ray_errors.NodeDiedError("node gone"), "transient"),
    (ray_errors.OutOfMemoryError("killed by the memory monitor"), "transient"),
    (ray_errors.PendingCallsLimitExceeded(), "transient"),
    (ray_errors.WorkerCrashedError(), "transient"),
    (remote(ray_errors.ActorDiedError()), "transient"),  # an actor's own call to a dead one
    (KeyError("trial_id"), "internal"),
    (ValueError("operands could not be broadcast"), "internal"),  # numpy's, not a rule
    (TypeError("unhashable type: 'list'"), "internal"),
    (TimeoutError(), "internal"),  # not Ray's: a bug of ours that waits
    (ConnectionError("reset"), "internal"),
    (remote(KeyError("x")), "internal"),
    (ray_errors.RaySystemError("boom"), "internal"),
])
def test_classify(error, kind):
    got, cause = classify(error)
    assert got == kind
    assert not isinstance(cause, ray_errors.RayTaskError)  # unwrapped to what was raised


def test_a_remote_refusal_shows_its_own_message_not_a_traceback(tmp_path):
    class Queue:
        def status(self, *a, **k):
            raise remote(TrialError("no trial 't9' of yours"))

    tb = LabToolbox("a", tmp_path / "agents" / "a", CampaignConfig(), forum=None, scorer=None,
                    queue=Queue())
    out = tb.call("trial_status", {"trial_id": "t9"})
    assert (out.content, out.error) == ("no trial 't9' of yours", "refusal")
    assert not (tmp_path / operations.FILE).exists()


class Broken:
    """Every method raises `error`."""

    def __init__(self, error):
        self.error = error

    def __getattr__(self, name):
        def fail(*a, **k):
            raise self.error
        return fail


def campaign_dir(tmp_path: Path) -> Path:
    d = tmp_path / "c"
    d.mkdir()
    save_campaign(CampaignConfig(), d / "config.yaml")
    return d


def test_an_internal_error_is_recorded_counted_and_shown(tmp_path, monkeypatch):
    d = campaign_dir(tmp_path)
    counted = []
    monkeypatch.setattr(metrics, "_record", lambda name, v, **tags: counted.append((name, tags)))
    tb = LabToolbox("agent-3", d / "agents" / "agent-3", CampaignConfig(),
                    forum=Broken(KeyError("cited")), scorer=None, queue=None)
    out = tb.call("read_forum", {"query": "vanilla", "limit": 5})
    assert out.is_error and out.error == "internal"
    assert out.content.startswith("internal error in read_forum (KeyError), recorded as err-")
    assert "Traceback" not in out.content and "cited" not in out.content  # the id, not the bug
    [entry] = operations.read(d)
    assert entry["id"] in out.content
    assert (entry["kind"], entry["tool"], entry["agent"]) == ("tool_internal_error",
                                                              "read_forum", "agent-3")
    assert json.loads(entry["args"]) == {"query": "vanilla", "limit": 5}
    assert entry["error"] == "KeyError: 'cited'"
    assert "Traceback (most recent call last)" in entry["traceback"]
    assert "read_forum" in entry["traceback"] and operations.headline(entry) == \
        "KeyError: 'cited'"
    assert counted == [("aar_tool_internal_errors_total", {"tool": "read_forum"})]
    [logged] = [json.loads(x) for x in (tb.workspace / "tool_calls.jsonl").read_text()
                .splitlines()]
    assert (logged["tool"], logged["error"]) == ("read_forum", "internal")

    text = status.campaign_text(d)
    assert "internal errors: 1" in text
    assert entry["id"] in text and "agent-3 read_forum: KeyError: 'cited'" in text
    html = report.render(report.load(d))
    assert "Internal errors (1;" in html and entry["id"] in html and "read_forum" in html


def test_transient_and_refused_calls_are_not_internal_errors(tmp_path):
    d = campaign_dir(tmp_path)
    tb = LabToolbox("a", d / "agents" / "a", CampaignConfig(),
                    forum=Broken(ray_errors.ActorUnavailableError("restarting", None)),
                    scorer=Broken(ScoreError("scoring budget used up")), queue=None)
    out = tb.call("post", {"title": "t", "body": "b", "kind": "insight"})
    assert out.error == "transient" and "temporarily unavailable" in out.content
    out = tb.call("leaderboard", {})
    assert (out.content, out.error) == ("scoring budget used up", "refusal")
    for args in ({"title": ""}, {"title": "t", "body": "b", "kind": "x"}, "no", [1]):
        out = tb.call("post", args)
        assert out.error == "refusal" and out.content.startswith("invalid input for post")
    assert tb.call("nope", {}).error == "refusal"
    assert tb.call("post", {"title": "\ud800", "body": "b", "kind": "insight"}).error == \
        "refusal"  # a lone surrogate JSON may carry: no file or database can store it
    assert operations.read(d) == []
    assert "internal errors: 0" in status.campaign_text(d)


def test_a_long_value_is_cut_in_the_refusal(tmp_path):
    tb = LabToolbox("a", tmp_path / "agents" / "a", CampaignConfig(), forum=None, scorer=None,
                    queue=None)
    out = tb.call("post", {"title": "t", "body": "y" * 9000, "kind": "insight"})
    assert out.error == "refusal" and out.content.endswith("is too long")
    assert len(out.content) < tools_mod.MAX_MESSAGE + 100


def test_an_unwritable_operations_log_still_answers(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise OSError("read-only file system")

    monkeypatch.setattr(operations, "record", fail)
    tb = LabToolbox("a", tmp_path / "agents" / "a", CampaignConfig(),
                    forum=Broken(KeyError("x")), scorer=None, queue=None)
    out = tb.call("read_forum", {})
    assert out.error == "internal" and "not recorded" in out.content


def test_operations_log_reads_past_a_torn_line(tmp_path):
    first = operations.record(tmp_path, "tool_internal_error", tool="post",
                              args=operations.args_text({"body": "x" * 10_000}))
    with open(tmp_path / operations.FILE, "a") as f:
        f.write('{"id": "err-cut", "at": 1')  # a writer killed mid-line
    second = operations.record(tmp_path, "brain_step_error", error="RuntimeError: y")
    entries = operations.read(tmp_path)
    assert [e["id"] for e in entries] == [first, second]
    assert len(entries[0]["args"]) < operations.MAX_ARGS_CHARS + 40
    assert operations.headline(entries[1]) == "RuntimeError: y"
    assert operations.read(tmp_path / "nowhere") == []


# ---- a real campaign ------------------------------------------------------------------------

def break_write_notebook() -> None:
    """Ray worker set-up hook: agent-0's first write_notebook raises KeyError (a bug)."""
    real = tools_mod.TOOLS["write_notebook"]
    fired: list[bool] = []

    def handler(toolbox, **args):
        if toolbox.agent_id == "agent-0" and not fired:
            fired.append(True)
            return {}["injected"]
        return real.handler(toolbox, **args)

    tools_mod.TOOLS["write_notebook"] = dataclasses.replace(real, handler=handler)


@pytest.mark.ray
@pytest.mark.slow
def test_a_handler_bug_in_a_campaign_is_recorded_and_the_campaign_finishes(
        small_setting, fast_student, cache_dir, tmp_path, capsys):
    from aar_ray.config import BudgetConfig
    from aar_ray.lab import NAMESPACE
    from aar_ray.lab.campaign import run_campaign

    cfg = CampaignConfig(name="bug", confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
                         setting=small_setting, student=fast_student, seeds=[0, 1],
                         agents=2, budget=BudgetConfig(trials_per_agent=2, wall_clock_s=600),
                         root=str(tmp_path), cache_dir=cache_dir)
    # workers cannot import this test module: ship the hook by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
             log_to_driver=False,
             runtime_env={"worker_process_setup_hook": break_write_notebook})
    try:
        summary = run_campaign(cfg, progress=False)
    finally:
        ray.shutdown()
    d = Path(summary["campaign_dir"])
    assert all(a["finished"] for a in summary["agents"])
    assert summary["trials"]["done"] == 4
    calls = [json.loads(x) for x in (d / "agents" / "agent-0" / "tool_calls.jsonl")
             .read_text().splitlines()]
    [bad] = [c for c in calls if c["error"] == "internal"]
    assert bad["tool"] == "write_notebook"
    assert bad["result"].startswith("internal error in write_notebook (KeyError), recorded as")
    assert any(c["tool"] == "write_notebook" and c["error"] is None for c in calls)  # it went on
    [entry] = operations.read(d)
    assert entry["id"] in bad["result"] and entry["agent"] == "agent-0"
    assert "KeyError: 'injected'" in entry["traceback"] and "in handler" in entry["traceback"]
    assert status.status(str(d), None) == 0
    assert "internal errors: 1" in capsys.readouterr().out
