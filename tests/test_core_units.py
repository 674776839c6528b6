"""Fast, exact unit tests of the core's rules, written to fail on small changes to them: the tool
boundary (validation, dispatch, each handler's forwarding), the splits, the PGR arithmetic and
the statistics. `make mutation` measures how many small changes they catch (docs/testing.md)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from aar_ray.config import CampaignConfig, ConfigError
from aar_ray.lab import tools as tools_mod
from aar_ray.lab.tools import MAX_NOTEBOOK, TOOLS, LabToolbox, call
from aar_ray.observe import metrics
from aar_ray.results import stats
from aar_ray.w2s import pgr
from aar_ray.w2s.tasks import TaskData, join_pair, make_splits, split_pair, subsample

# ---- the tool boundary ----------------------------------------------------------------------


class Recorder:
    """Stands in for an actor: records every call, answers from `answers` (value or callable)."""

    def __init__(self, **answers):
        self.calls, self.answers = [], answers

    def __getattr__(self, name):
        def method(*a, **k):
            self.calls.append((name, a, k))
            answer = self.answers.get(name, {"ok": name})
            return answer(*a, **k) if callable(answer) else answer
        return method


CATALOG = {"vanilla": {"summary": "Plain training.\nOn weak labels.\n\nMore detail.",
                       "params": {}},
           "bootstrap": {"summary": "Bootstrapping.", "params": {"beta": {}}}}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    latency = []
    monkeypatch.setattr(metrics, "tool_latency", lambda tool, s: latency.append((tool, s)))
    forum, scorer = Recorder(), Recorder()
    queue = Recorder(method_catalog=CATALOG,
                     status=lambda tid, agent, wait=0: {"status": "done", "error": None,
                                                        "method": "vanilla"},
                     enqueue=lambda *a, **k: {"trial_id": "t1", "status": "queued"})
    tb = LabToolbox("ag", tmp_path / "agents" / "ag", CampaignConfig(), forum=forum,
                    scorer=scorer, queue=queue)
    return tb, forum, scorer, queue, latency


def ok(out):
    assert not out.is_error and out.error is None, out
    return json.loads(out.content)


def test_schemas_are_the_tool_definitions(lab):
    tb = lab[0]
    assert tb.schemas() == [{"name": t.name, "description": t.description,
                             "input_schema": t.schema} for t in TOOLS.values()]
    for t in TOOLS.values():
        assert t.schema["type"] == "object" and t.schema["additionalProperties"] is False


def test_validation_refuses_extra_missing_and_mistyped_fields(lab):
    tb, forum = lab[0], lab[1]
    cases = [("leaderboard", {"limit": 5, "x": 1}, "invalid input for leaderboard at input: "
              "Additional properties are not allowed ('x' was unexpected)"),
             ("reply", {"body": "b"}, "invalid input for reply at input: 'post_id' is a "
              "required property"),
             ("reply", {"post_id": 0, "body": "b"}, "invalid input for reply at post_id: 0 is "
              "less than the minimum of 1"),
             ("read_forum", {"limit": 51}, "invalid input for read_forum at limit: 51 is "
              "greater than the maximum of 50"),
             ("post", {"title": "t", "body": "b", "kind": "insight", "tags": [1]},
              "invalid input for post at tags/0: 1 is not of type 'string'"),
             ("read_forum", [], "invalid input for read_forum at input: [] is not of type "
              "'object'"),
             ("nope", {}, f"unknown tool 'nope'; available: {sorted(TOOLS)}")]
    for tool, args, message in cases:
        out = tb.call(tool, args)
        assert (out.content, out.is_error, out.error) == (message, True, "refusal")
    assert forum.calls == []  # nothing invalid reached an actor
    assert tb.calls == len(cases)


def test_a_refusal_message_keeps_both_ends_of_a_long_value(lab):
    out = lab[0].call("write_notebook", {"text": "a" * 50 + "z" * (MAX_NOTEBOOK + 1)})
    half = tools_mod.MAX_MESSAGE // 2
    head, tail = out.content.split(" ... ")
    assert head == "invalid input for write_notebook at text: '" + "a" * 50 + "z" * (half - 51)
    assert tail == "z" * (half - len("' is too long")) + "' is too long"


def test_none_args_mean_no_args(lab):
    tb, forum = lab[0], lab[1]
    assert ok(tb.call("read_forum", None)) == {"ok": "read"}
    assert forum.calls == [("read", ("", "", "newest", 10), {})]


def test_success_is_logged_and_timed_failures_only_logged(lab):
    tb, _, _, _, latency = lab
    ok(tb.call("leaderboard", {"limit": 3}))
    tb.call("leaderboard", {"limit": 0})
    tb.call("nope", None)
    log = [json.loads(x) for x in (tb.workspace / "tool_calls.jsonl").read_text().splitlines()]
    assert [(e["tool"], e["args"], e["error"]) for e in log] == [
        ("leaderboard", {"limit": 3}, None), ("leaderboard", {"limit": 0}, "refusal"),
        ("nope", None, "refusal")]
    assert json.loads(log[0]["result"]) == {"ok": "leaderboard"}
    assert all(e["s"] >= 0 and e["at"] > 0 for e in log)
    assert [t for t, _ in latency] == ["leaderboard"] and latency[0][1] >= 0


def test_results_are_json_with_strings_for_the_rest(lab):
    tb, forum = lab[0], lab[1]
    forum.answers["read"] = [{"at": np.float64(1.5), "path": tb.workspace}]
    assert ok(tb.call("read_forum", {})) == [{"at": 1.5, "path": str(tb.workspace)}]


def test_handlers_forward_exactly(lab):
    tb, forum, scorer, queue, _ = lab
    ok(tb.call("read_forum", {"query": "q", "tag": "t", "sort": "top", "limit": 3}))
    ok(tb.call("post", {"title": "T", "body": "B", "kind": "result", "tags": ["x"],
                        "cites": ["t1"]}))
    ok(tb.call("reply", {"post_id": 7, "body": "R"}))
    ok(tb.call("leaderboard", {}))
    ok(tb.call("leaderboard", {"limit": 4}))
    ok(tb.call("trial_status", {"trial_id": "t1"}))
    ok(tb.call("trial_status", {"trial_id": "t1", "wait_s": 2.5}))
    assert forum.calls[0] == ("read", ("q", "t", "top", 3), {})
    name, args, _ = forum.calls[1]
    assert (name, args[:7]) == ("post", ("ag", "T", "B", "result", ["x"], ["t1"], None))
    assert args[7].startswith("ag:")
    name, args, _ = forum.calls[2]
    assert (name, args[:3]) == ("reply", ("ag", 7, "R")) and args[3].startswith("ag:")
    assert scorer.calls == [("leaderboard", ("public", 10), {}),
                            ("leaderboard", ("public", 4), {})]
    assert queue.calls == [("status", ("t1", "ag", 0), {}), ("status", ("t1", "ag", 2.5), {})]


def test_methods_catalog_is_fetched_once_and_listed(lab):
    tb, _, _, queue, _ = lab
    (tb.workspace / "methods").mkdir()
    (tb.workspace / "methods" / "mine.py").write_text("x")
    listed = ok(tb.call("list_methods", {}))
    assert listed == [{"name": "bootstrap", "summary": "Bootstrapping."},
                      {"name": "vanilla", "summary": "Plain training. On weak labels."},
                      {"name": "custom:ag/mine", "summary": "your own method"}]
    assert ok(tb.call("describe_method", {"name": "bootstrap"})) == CATALOG["bootstrap"]
    out = tb.call("describe_method", {"name": "boot"})
    assert (out.error, out.content) == ("refusal", "unknown method 'boot'; allowed: "
                                        "['bootstrap', 'vanilla'] (your own methods are "
                                        "described by their source)")
    assert [c[0] for c in queue.calls] == ["method_catalog"]


def test_run_trial_enqueues_and_keeps_the_agents_record(lab):
    tb, _, _, queue, _ = lab
    assert ok(tb.call("run_trial", {"method": "bootstrap", "params": {"beta": 0.5},
                                    "seeds": [1]})) == {"trial_id": "t1", "status": "queued"}
    ok(tb.call("run_trial", {"method": "vanilla"}))
    (n1, a1, k1), (n2, a2, k2) = queue.calls
    assert (n1, a1) == ("enqueue", ("ag", "bootstrap", {"beta": 0.5}, [1]))
    assert (n2, a2) == ("enqueue", ("ag", "vanilla", {}, None))
    assert k1["request_id"] != k2["request_id"]
    rows = [json.loads(x) for x in (tb.workspace / "trials.jsonl").read_text().splitlines()]
    assert [(r["method"], r["params"], r["trial_id"]) for r in rows] == [
        ("bootstrap", {"beta": 0.5}, "t1"), ("vanilla", {}, "t1")]


def test_submit_only_finished_trials(lab):
    tb, _, scorer, queue, _ = lab
    assert ok(tb.call("submit", {"trial_id": "t1"})) == {"ok": "submit"}
    assert scorer.calls == [("submit", ("t1", "ag"), {})]
    for status, error, message in [
            ("running", None, "trial t2 is running; only finished trials can be submitted"),
            ("error", "boom", "trial t2 is error (boom); only finished trials can be "
                              "submitted")]:
        queue.answers["status"] = {"status": status, "error": error, "method": "vanilla"}
        out = tb.call("submit", {"trial_id": "t2"})
        assert (out.error, out.content) == ("refusal", message)
    assert len(scorer.calls) == 1


def test_notebook_append_replace_and_limit(lab):
    tb = lab[0]
    assert ok(tb.call("read_notebook", {})) == {"text": "", "chars": 0}
    assert ok(tb.call("write_notebook", {"text": "one"})) == {"chars": 3}
    assert ok(tb.call("write_notebook", {"text": "two", "mode": "append"})) == {"chars": 7}
    assert ok(tb.call("read_notebook", {})) == {"text": "one\ntwo", "chars": 7}
    assert ok(tb.call("write_notebook", {"text": "new", "mode": "replace"})) == {"chars": 3}
    big = "x" * (MAX_NOTEBOOK - 4)
    assert ok(tb.call("write_notebook", {"text": big})) == {"chars": MAX_NOTEBOOK}
    out = tb.call("write_notebook", {"text": "y"})
    assert (out.error, out.content) == ("refusal", f"the notebook would exceed {MAX_NOTEBOOK} "
                                        "characters; write a shorter summary with mode=replace")
    read = ok(tb.call("read_notebook", {}))
    assert read["chars"] == MAX_NOTEBOOK and read["text"] == ("new\n" + big)[-20_000:]


def test_call_reaches_plain_objects_and_ray_handles():
    class Plain:
        def f(self, a, b=0):
            return a + b

    class Method:
        def remote(self, *a, **k):
            return ("ref", a, k)

    class Handle:
        f = Method()

    assert call(Plain(), "f", 1, b=2) == 3
    got = {}

    def fake_get(ref, timeout):
        got.update(ref=ref, timeout=timeout)
        return "value"

    import ray
    real = ray.get
    ray.get = fake_get
    try:
        assert call(Handle(), "f", 1, b=2) == "value"
    finally:
        ray.get = real
    assert got == {"ref": ("ref", (1,), {"b": 2}), "timeout": 900}


# ---- the splits ------------------------------------------------------------------------------

def test_splits_partition_the_data_and_are_deterministic():
    for n, test_size, seed in [(100, 20, 0), (101, 30, 3), (10, 5, 1)]:
        s = make_splits(n, test_size, seed)
        parts = [s.labelled, s.unlabelled, s.test]
        assert len(s.test) == test_size
        assert len(s.labelled) == (n - test_size) // 2
        assert len(s.unlabelled) == n - test_size - (n - test_size) // 2
        assert sorted(np.concatenate(parts).tolist()) == list(range(n))
        assert all((np.diff(p) > 0).all() for p in parts)  # sorted, no repeats
        again = make_splits(n, test_size, seed)
        assert all((a == b).all() for a, b in zip(parts, [again.labelled, again.unlabelled,
                                                          again.test], strict=True))
    a, b = make_splits(200, 50, 0), make_splits(200, 50, 1)
    assert not (a.labelled == b.labelled).all()  # each seed trains on its own halves


@pytest.mark.parametrize("n, test_size", [(100, 0), (100, 96), (100, -1), (5, 1)])
def test_splits_refuse_sizes_that_do_not_fit(n, test_size):
    with pytest.raises(ConfigError, match=f"test_size: {test_size} does not fit a data set of "
                                         f"{n} examples"):
        make_splits(n, test_size, 0)
    make_splits(100, 95, 0)  # the largest that fits: 5 left to split
    assert len(make_splits(100, 1, 0).test) == 1  # the smallest


def _data(labels, texts=None):
    labels = np.asarray(labels)
    return TaskData(texts or [f"text {i}" for i in range(len(labels))], labels, ("neg", "pos"))


def test_task_data_checks_lengths_and_fingerprints_content():
    with pytest.raises(ValueError, match="^texts and labels differ in length$"):
        TaskData(["a"], np.array([0, 1]), ("n", "p"))
    a = _data([0, 1, 1])
    fp = a.fingerprint()
    assert fp == "e388ddbd6abee742"  # part of every cache key: a change must be deliberate
    assert len(fp) == 16 and int(fp, 16) >= 0 and fp == _data([0, 1, 1]).fingerprint()
    others = [_data([0, 1, 0]), _data([0, 1, 1], ["text 0", "text 1", "text 3"]),
              _data([1, 0, 1], ["text 1", "text 0", "text 2"]), _data([0, 1])]
    assert len({fp, *(d.fingerprint() for d in others)}) == 5
    # the separators keep a text's end and a label apart: ("a1", 0) is not ("a", 10)
    assert TaskData(["a1"], np.array([0]), ("x",)).fingerprint() != \
        TaskData(["a"], np.array([10]), ("x",)).fingerprint()


def test_pairs_join_and_split():
    text = join_pair("left side", "right: B side")
    assert text == "A: left side\nB: right: B side"
    assert split_pair(text) == ("left side", "right: B side")
    assert split_pair(join_pair("a", "b\nB: c")) == ("a", "b\nB: c")  # split at the first


def test_subsample_is_balanced_deterministic_and_sorted():
    data = _data([0] * 30 + [1] * 10)
    assert subsample(data, 0) is data and subsample(data, 40) is data
    assert subsample(data, -1) is data and subsample(data, 41) is data
    sub = subsample(data, 11)
    assert sub.labels.tolist().count(0) == 5 and sub.labels.tolist().count(1) == 5
    assert sub.classes == data.classes
    idx = [int(t.split()[1]) for t in sub.texts]
    assert idx == sorted(idx) and [data.labels[i] for i in idx] == sub.labels.tolist()
    assert idx == [0, 12, 15, 20, 24, 33, 34, 36, 38, 39]  # pinned: cache keys build on it
    assert all(len(subsample(data, k).texts) <= k for k in range(1, 40))
    assert subsample(data, 39).labels.tolist().count(1) == 10  # a class smaller than its share


def test_load_task_subsamples_to_the_default_size(monkeypatch):
    from aar_ray.w2s import tasks

    spec = tasks.TaskSpec("fake", "d", lambda: _data([0, 1] * 20), default_size=10,
                          default_test_size=4)
    monkeypatch.setattr(tasks.TASKS, "get", lambda name: spec if name == "fake" else None)
    assert len(tasks.load_task("fake").texts) == 10
    assert len(tasks.load_task("fake", 6).texts) == 6
    assert len(tasks.load_task("fake", 100).texts) == 40


def test_obj_builds_a_closed_object_schema():
    assert tools_mod._obj({"a": {"type": "string"}}, ("a",)) == {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
        "additionalProperties": False}
    assert tools_mod._obj({})["required"] == []


def test_unicode_problem_names_the_problem_and_tolerates_any_object():
    assert tools_mod._unicode_problem({"t": "x\ud800"}) == (
        "input contains text that is not valid Unicode (a lone surrogate); send UTF-8")
    assert tools_mod._unicode_problem({"t": "ok ünï", "p": object()}) is None


def test_schema_message_is_cut_only_past_the_limit():
    limit = tools_mod.MAX_MESSAGE
    exact = "v" * (limit - len("'' is too long"))  # a message of exactly MAX_MESSAGE chars

    class Fake:
        def iter_errors(self, args):
            from jsonschema import ValidationError
            yield ValidationError(f"'{args}' is too long")

    tools_mod.VALIDATORS["fake"] = Fake()
    try:
        assert tools_mod._schema_problem("fake", exact).endswith(f"'{exact}' is too long")
        assert " ... " in tools_mod._schema_problem("fake", exact + "v")
    finally:
        del tools_mod.VALIDATORS["fake"]


def test_a_toolbox_reopens_its_workspace(lab):
    tb = lab[0]
    again = LabToolbox("ag", tb.workspace, CampaignConfig(), forum=None, scorer=None,
                       queue=None)  # a restarted agent
    assert again.campaign_dir == tb.workspace.parent.parent and again.step is None


def test_failures_are_logged_for_operators(tmp_path, caplog):
    from ray.exceptions import ActorUnavailableError

    from aar_ray.lab.trials import TrialError

    class Raise:
        def __init__(self, error):
            self.error = error

        def __getattr__(self, name):
            def f(*a, **k):
                raise self.error
            return f

    unavailable = ActorUnavailableError("restarting", None)
    tb = LabToolbox("ag", tmp_path / "agents" / "ag", CampaignConfig(), forum=Raise(unavailable),
                    scorer=Raise(KeyError("k")), queue=Raise(TrialError("no trial 'x'")))
    caplog.set_level("INFO", logger="aar_ray.lab.tools")
    out = tb.call("read_forum", {})
    assert (out.content, out.is_error, out.error) == (
        "read_forum is temporarily unavailable (ActorUnavailableError); try again shortly",
        True, "transient")
    out = tb.call("trial_status", {"trial_id": "x"})
    assert (out.content, out.is_error, out.error) == ("no trial 'x'", True, "refusal")
    out = tb.call("leaderboard", {})
    assert out.is_error is True and out.error == "internal"
    ref = out.content.split("recorded as ")[1].split(".")[0]
    assert out.content == (f"internal error in leaderboard (KeyError), recorded as {ref}. This "
                           "is a bug in the lab, not a problem with your input, and the same "
                           "call will probably fail again: carry on with something else.")
    warn, err = caplog.records
    assert (warn.levelname, warn.getMessage()) == (
        "WARNING", f"tool read_forum unavailable for ag: {unavailable!r}")
    assert (err.levelname, err.getMessage()) == ("ERROR",
                                                 "tool leaderboard: internal error for ag")
    assert err.exc_info[1].args == ("k",)


def test_an_unwritable_operations_log_is_logged(tmp_path, caplog, monkeypatch):
    from aar_ray.observe import operations

    def fail(*a, **k):
        raise OSError("read-only")

    monkeypatch.setattr(operations, "record", fail)
    tb = LabToolbox("ag", tmp_path / "agents" / "ag", CampaignConfig(), forum=None,
                    scorer=None, queue=None)
    tb.forum = Recorder(read=lambda *a: {}["x"])
    out = tb.call("read_forum", {})
    assert out.content.startswith("internal error in read_forum (KeyError), not recorded (the "
                                  "operations log could not be written). This is a bug")
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1] == \
        "operations log not written"


def test_the_agents_record_keeps_odd_values_and_cuts_long_results(lab):
    from pathlib import Path

    tb, forum = lab[0], lab[1]
    forum.answers["read"] = ["x" * 3000]
    tb.call("read_forum", {"query": "q"})
    tb.calls = 0
    tb._log("read_forum", {"p": Path("/a")}, tools_mod.ToolResult("r"), 0.1234567)
    first, second = [json.loads(x) for x in
                     (tb.workspace / "tool_calls.jsonl").read_text().splitlines()]
    assert len(first["result"]) == 2000 and first["result"].startswith('["xxx')
    assert isinstance(first["s"], float) and 0 <= first["s"] < 5
    assert first["s"] == round(first["s"], 5)
    assert second["args"] == {"p": "/a"} and second["s"] == 0.12346


def test_request_ids_name_the_request_and_the_step(lab):
    tb, forum, _, queue, _ = lab
    tb.step = 3

    def ids(tool, args):
        actor = queue if tool == "run_trial" else forum
        ok(tb.call(tool, args))
        _, a, k = actor.calls[-1]
        return k.get("request_id") or a[-1]

    post = {"title": "T", "body": "B", "kind": "insight", "tags": ["a"], "cites": ["t1"]}
    base = ids("post", post)
    assert base == tb._request_id("post", "T", "B", "insight", ["a"], ["t1"])
    assert ids("reply", {"post_id": 5, "body": "B"}) == tb._request_id("reply", 5, "B")
    assert ids("run_trial", {"method": "vanilla", "params": {"a": 1}, "seeds": [0]}) == \
        tb._request_id("run_trial", "vanilla", {"a": 1}, [0])
    assert tb._request_id("x", object()).startswith("ag:s3:")  # any value, as text
    assert base.startswith("ag:s3:") and len(base.split(":")[2]) == 16
    assert ids("post", post) == base  # a replayed step: the same id, the forum drops it
    changed = [ids("post", {**post, k: v}) for k, v in
               [("title", "U"), ("body", "C"), ("kind", "hypothesis"), ("tags", ["b"]),
                ("cites", ["t2"])]]
    reply = [ids("reply", {"post_id": 1, "body": "B"}), ids("reply", {"post_id": 2, "body": "B"}),
             ids("reply", {"post_id": 1, "body": "C"})]
    trial = [ids("run_trial", {"method": "vanilla"}),
             ids("run_trial", {"method": "bootstrap"}),
             ids("run_trial", {"method": "vanilla", "params": {"a": 1}}),
             ids("run_trial", {"method": "vanilla", "seeds": [1]})]
    everything = [base, *changed, *reply, *trial]
    assert len(set(everything)) == len(everything)
    assert ids("reply", {"post_id": 1, "body": "B"}) == reply[0]
    tb.step = 4
    assert ids("post", post) != base
    tb.step = None
    first, second = ids("post", post), ids("post", post)
    assert first.startswith("ag:c") and first != second  # no step: the call count


def test_submitting_an_agents_own_method_queues_its_control(lab):
    tb, _, scorer, queue, _ = lab
    queue.answers["status"] = {"status": "done", "error": None, "method": "custom:ag/mine"}
    ok(tb.call("submit", {"trial_id": "t7"}))
    assert queue.calls == [("status", ("t7", "ag"), {}), ("enqueue_control", ("t7",), {})]
    assert scorer.calls == [("submit", ("t7", "ag"), {})]


def test_run_trial_records_when(lab):
    tb = lab[0]
    ok(tb.call("run_trial", {"method": "vanilla"}))
    row = json.loads((tb.workspace / "trials.jsonl").read_text())
    assert row["at"] > 1.7e9


# ---- PGR arithmetic and statistics (hand-computed cases) -------------------------------------

# two seeds, four items each (1 = correct). Per seed accuracies: transfer .75/.5, weak .25/.25,
# ceiling 1/.75, so pooled PGR = (.5 + .25) / (.75 + .5) = 0.6.
T = [[1, 1, 1, 0], [1, 1, 0, 0]]
W = [[1, 0, 0, 0], [1, 0, 0, 0]]
C = [[1, 1, 1, 1], [1, 1, 1, 0]]
# the linearised values (num - 0.6 den) / 0.625: seed 0 [0, .64, .64, -.96], seed 1
# [0, .64, -.96, 0]; item variances (ddof 1) 1.7152/3 and 1.3056/3, so
# se_items = sqrt((.571733 + .4352) / 4) / 2 = 0.2508652 on 8 - 2 = 6 df, above the seeds'
# se std([.08, -.08], ddof=1) / sqrt(2) = 0.08.
SE_ITEMS = math.sqrt((1.7152 / 3 + 1.3056 / 3) / 4) / 2


def test_pgr_and_its_undefined_cases():
    assert pgr.pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert pgr.pgr(0.5, 0.6, 0.8) == pytest.approx(-0.5)
    assert pgr.pgr(0.7, 0.6, 0.6) is None and pgr.pgr(0.7, 0.6, 0.5) is None
    assert pgr.pgr(0.5, 0.0, pgr.MIN_GAP) is None  # a gap of exactly MIN_GAP
    assert pgr.pgr(0.5, 0.0, 2 * pgr.MIN_GAP) == pytest.approx(0.5 / (2 * pgr.MIN_GAP))
    assert pgr.pgr(0.7, 0.6, math.inf) is None and pgr.pgr(0.7, math.nan, 0.8) is None


def test_pooled_is_the_ratio_of_summed_gains():
    assert pgr.pooled([0.75, 0.5], [0.25, 0.25], [1.0, 0.75]) == pytest.approx(0.6)
    assert pgr.pooled([1, 0], [0, 0], [1, 1]) == 0.5  # integers: no integer division
    assert pgr.pooled([], [], []) is None
    assert pgr.pooled([0.9], [0.5], [0.5]) is None


def test_accuracy_and_mean_se():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert pgr.accuracy(probs, np.array([0, 1, 1, 1])) == 0.75
    assert pgr.accuracy(probs.tolist(), [1, 1, 1, 1]) == 0.5
    assert pgr.mean_se([]) == (None, None) and pgr.mean_se([None]) == (None, None)
    assert pgr.mean_se([0.5]) == (0.5, None)
    mean, se = pgr.mean_se([1.0, None, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                          + (4 - 7 / 3) ** 2) / 2) / math.sqrt(3))
    assert pgr.mean_se([True, 0]) == (0.5, 0.5)


def test_per_seed_arrays_validates_and_names_the_problem():
    out = pgr.per_seed_arrays(T, W)
    assert [[a.tolist() for a in x] for x in out] == [T, W]
    assert out[0][0].dtype == np.float64
    assert len(pgr.per_seed_arrays([[0, 1]], [[1, 1]])[1][0]) == 2  # two items are enough
    for args, message in [
            (([], []), "^need at least one seed$"),
            ((T, W[:1]), "every input needs 2 seeds, got 1"),
            (([[1]], [[0]]), r"seed 0: expected a 1-D array of >= 2 items, got \(1,\)"),
            (([[[1, 0]]], [[[1, 0]]]), r"seed 0: expected a 1-D array of >= 2 items, got "
                                       r"\(1, 2\)"),
            (([[1, 0], [1, 0, 1]], [[1, 0], [1, 0]]), "seed 1: need 0/1 arrays of one length 3"),
            (([[1, 0]], [[1, 2]]), "seed 0: need 0/1 arrays of one length 2"),
            (([[1, 0]], [[1, 0, 1]]), "seed 0: need 0/1 arrays of one length 2")]:
        with pytest.raises(ValueError, match=message):
            pgr.per_seed_arrays(*args)


def test_ratio_se_by_hand():
    t, w, c = pgr.per_seed_arrays(T, W, C)
    num = [a - b for a, b in zip(t, w, strict=True)]
    den = [a - b for a, b in zip(c, w, strict=True)]
    se, df = pgr.ratio_se(num, den, 0.6)
    assert (se, df) == (pytest.approx(SE_ITEMS), 6.0)
    with pytest.raises(ValueError):
        pgr.ratio_se(num, den[:1], 0.6)  # seeds must pair up
    se1, df1 = pgr.ratio_se(num[:1], den[:1], 0.5 / 0.75)  # one seed: items only
    v = (num[0] - (0.5 / 0.75) * den[0]) / 0.75
    assert (se1, df1) == (pytest.approx(math.sqrt(v.var(ddof=1) / 4)), 3.0)
    # seeds that disagree far more than items vary: the seeds' se, on S - 1 df
    many = 200
    tt = [[1] * many, [0] * many, [1] * many]
    ww = [[0] * many] * 3
    cc = [[1] * many] * 3
    t, w, c = pgr.per_seed_arrays(tt, ww, cc)
    se, df = pgr.ratio_se([a - b for a, b in zip(t, w, strict=True)],
                          [a - b for a, b in zip(c, w, strict=True)], 2 / 3)
    assert df == 2.0 and se == pytest.approx(np.std([1, 0, 1], ddof=1) / math.sqrt(3))


def test_pgr_ci_by_hand():
    est = pgr.pgr_ci(T, W, C)
    half = 2.4469118511449692 * SE_ITEMS  # t(0.975, 6)
    assert (est.mean, est.se, est.df, est.n_seeds) == (pytest.approx(0.6),
                                                       pytest.approx(SE_ITEMS), 6.0, 2)
    assert (est.lo, est.hi) == (pytest.approx(0.6 - half, abs=1e-9),
                                pytest.approx(0.6 + half, abs=1e-9))
    wide = pgr.pgr_ci(T, W, C, alpha=0.01)
    assert wide.hi - wide.lo == pytest.approx(2 * 3.707428021 * SE_ITEMS)
    assert pgr.Estimate(**est.to_dict()) == est
    none = pgr.pgr_ci(T, C, W)  # the "ceiling" below the teacher: undefined
    assert math.isnan(none.mean) and math.isnan(none.lo) and math.isnan(none.hi)
    assert math.isnan(none.se) and none.n_seeds == 2 and math.isnan(none.df)
    assert pgr.t_crit(0.05, 6) == pytest.approx(2.446911851)


def test_paired_compare_by_hand():
    # the method is right on one more item of seed 0 than the baseline (transfer T)
    better = [[1, 1, 1, 1], [1, 1, 0, 0]]
    cmp = stats.paired_compare(better, T, W, C)
    # Δacc per seed .25 and 0: ΔPGR = .25 / 1.25 = 0.2; d_z = mean / sd = .125 / .1767767
    assert cmp.delta_pgr == pytest.approx(0.2)
    assert cmp.effect_size == pytest.approx(0.125 / (0.25 / math.sqrt(2)))
    # the test of mean Δacc = .125: items give sqrt(.25 / 4) / 2 = .125, the seeds
    # std([.125, -.125], ddof=1) / sqrt(2) = .125 too, and ties go to the seeds: t = 1 on 1 df
    assert cmp.p_value == pytest.approx(2 * scipy_stats.t.sf(1.0, 1)) == pytest.approx(0.5)
    assert cmp.df == 6.0 and cmp.lo < 0.2 < cmp.hi
    assert cmp.hi - cmp.lo == pytest.approx(2 * pgr.t_crit(0.05, cmp.df) * cmp.se)
    assert stats.Comparison(**cmp.to_dict()) == cmp
    same = stats.paired_compare(T, T, W, C)
    assert (same.delta_pgr, same.p_value, same.effect_size) == (0.0, 1.0, 0.0)
    worse = stats.paired_compare(T, better, W, C)
    assert worse.delta_pgr == pytest.approx(-0.2) and worse.p_value == cmp.p_value
    assert worse.effect_size == pytest.approx(-cmp.effect_size)
    # every seed gains the same: sd 0, an infinite effect; items still vary, so p > 0
    even = stats.paired_compare([[1, 1, 1, 1], [1, 1, 1, 0]], T, W, C)
    assert even.effect_size == math.inf and 0 < even.p_value < 1
    one = stats.paired_compare(better[:1], T[:1], W[:1], C[:1])
    assert math.isnan(one.effect_size) and one.delta_pgr == pytest.approx(0.25 / 0.75)
    gapless = stats.paired_compare(better, T, W, W)
    assert math.isnan(gapless.delta_pgr) and gapless.p_value == cmp.p_value
    assert math.isnan(gapless.lo) and math.isnan(gapless.hi)
    assert gapless.effect_size == cmp.effect_size


def test_paired_compare_with_no_item_noise_is_certain():
    all_better = [[1, 1, 1, 1], [1, 1, 1, 1]]
    all_worse = [[0, 0, 0, 0], [0, 0, 0, 0]]
    cmp = stats.paired_compare(all_better, all_worse, all_worse, all_better)
    assert cmp.p_value == 0.0 and cmp.delta_pgr == 1.0 and cmp.effect_size == math.inf


def test_holm_by_hand():
    assert stats.holm([]) == []
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # monotone: never below
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    out = stats.holm([0.01, math.nan, 0.02])
    assert out[0] == pytest.approx(0.03) and math.isnan(out[1]) and out[2] == pytest.approx(
        0.04)  # NaN counts in m = 3 and ranks last
    assert stats.holm([0.02, 0.02]) == [0.04, 0.04]
    assert stats.holm([0.3]) == [0.3]


def test_min_detectable_delta_and_spearman():
    se, df = 0.1, 10
    assert stats.min_detectable_delta(se, df) == pytest.approx(
        (scipy_stats.t.ppf(0.975, 10) + scipy_stats.t.ppf(0.8, 10)) * 0.1)
    assert stats.min_detectable_delta(se, df, 5) == pytest.approx(
        (scipy_stats.t.ppf(1 - 0.005, 10) + scipy_stats.t.ppf(0.8, 10)) * 0.1)
    assert stats.min_detectable_delta(se, df, power=0.5) == pytest.approx(
        scipy_stats.t.ppf(0.975, 10) * 0.1)
    assert stats.min_detectable_delta(se, df, alpha=0.1) == pytest.approx(
        (scipy_stats.t.ppf(0.95, 10) + scipy_stats.t.ppf(0.8, 10)) * 0.1)
    assert stats.min_detectable_delta(se, 1) == pytest.approx(
        (scipy_stats.t.ppf(0.975, 1) + scipy_stats.t.ppf(0.8, 1)) * 0.1)  # one df is enough
    for bad in [(0, 10, 1), (0.1, 0, 1), (0.1, 10, 0)]:
        assert math.isnan(stats.min_detectable_delta(*bad))
    assert stats.spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert stats.spearman([1, 2], [1, 2]) is None
    assert stats.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)  # two values
    assert stats.spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.8660254)
    assert stats.spearman([1, 1, 1], [1, 2, 3]) is None
    assert stats.spearman([1, 2, 3], [5, 5, 5]) is None


def test_write_method_saves_the_source_or_refuses_a_forum_copy(lab):
    from aar_ray.sandbox import custom_methods

    tb, forum, scorer, queue, _ = lab
    source = custom_methods.TEMPLATE.replace("my_method", "mine")
    out = ok(tb.call("write_method", {"name": "mine", "code": source}))
    assert out["method"] == "custom:ag/mine" and out["code_hash"] == \
        custom_methods.code_hash(source)
    assert out["note"] == ("run it with run_trial(method='custom:ag/mine'); it runs in a "
                           "sandbox: no files, processes, sockets or ctypes")
    assert (tb.campaign_dir / "agents" / "ag" / "methods" / "mine.py").read_text() == source
    assert forum.calls == [] and scorer.calls == []  # checked against what "ag" read
    out = tb.call("write_method", {"name": "vanilla", "code": source})  # a built-in's name
    assert out.error == "refusal" and "is a built-in" in out.content
    assert [c[0] for c in queue.calls] == ["method_catalog"]
    copied = "\n".join(f"x{i} = {i} * 2  # a line of someone's post" for i in range(12))
    forum.answers["read"] = [{"post_id": 9, "author": "other", "body": copied},
                             {"post_id": 8, "author": "other", "body": source}]
    ok(tb.call("read_forum", {}))
    out = tb.call("write_method", {"name": "lifted", "code": source + copied})
    assert out.error == "refusal" and out.content.startswith(
        "write_method refused: your code copies 12 lines") and "(post 9 by other)" in out.content
    name, args, _ = scorer.calls[-1]
    assert (name, args[:4]) == ("record_event", ("ag", "", "forum_copy", out.content))
    assert not (tb.campaign_dir / "agents" / "ag" / "methods" / "lifted.py").exists()
    assert not tb.call("write_method", {"name": "tmpl", "code": source}).is_error  # template
    mine = "\n".join(f"m{i} = {i} + 3  # my own line, number {i}" for i in range(12))
    ok(tb.call("post", {"title": "my code", "body": mine, "kind": "insight"}))
    forum.answers["read"] = [{"post_id": 10, "author": "ag", "body": mine}]
    ok(tb.call("read_forum", {}))  # one's own post, read back
    assert not tb.call("write_method", {"name": "mine2", "code": source + mine}).is_error
