"""The lab's rules without Ray: scorer feedback and leaderboard, forum, tools, offline brain."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ray.exceptions import ActorUnavailableError

from aar_ray.brains.base import ToolResult
from aar_ray.brains.offline import OfflineBrain
from aar_ray.config import BudgetConfig, CampaignConfig, ScoringConfig
from aar_ray.lab import citable, rules
from aar_ray.lab.forum import Forum, ForumError
from aar_ray.lab.scorer import ScoreError, Scorer
from aar_ray.lab.tools import TOOLS, LabToolbox
from aar_ray.lab.trials import TrialError
from aar_ray.results import records
from aar_ray.w2s.trial import run_method


@pytest.fixture(scope="module")
def scorer(small_setting, fast_student, cache_dir, tmp_path_factory):
    cfg = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0, 1],
                         cache_dir=cache_dir,
                         scoring=ScoringConfig(submissions_per_agent=4, ladder_margin=0.05))
    s = Scorer(str(tmp_path_factory.mktemp("campaign")), cfg)
    s.prepare()
    return s


def _record(scorer, trial_id, agent, method="vanilla", params=None, seeds=None):
    seeds = seeds or scorer.cfg.seeds
    preds = {seed: run_method(method, params, scorer.student_inputs(seed), scorer.cfg.student)
             for seed in seeds}
    scorer.record(trial_id, agent, method, params or {}, seeds, {}, preds)
    return preds


def test_scorer_feedback_is_coarse_laddered_and_paired_with_vanilla(scorer):
    _record(scorer, "base", "baseline")
    scorer.submit("base", "baseline")
    _record(scorer, "t1", "a", "label_smoothing", {"epsilon": 0.3})
    fb = scorer.submit("t1", "a")
    assert set(fb) == {"trial_id", "public_delta", "public_delta_ci", "public_pgr",
                       "replicated", "your_best", "message"}
    # ΔPGR over vanilla on the same seeds and items, rounded; its CI brackets it
    assert fb["public_delta"] == round(fb["public_delta"], 2)
    lo, hi = fb["public_delta_ci"]
    assert lo <= fb["public_delta"] <= hi and fb["replicated"] is None
    exact = scorer.score(scorer.predictions("t1"), "public")["vs_vanilla"]["delta"]
    assert fb["public_delta"] == round(exact, 2)
    _record(scorer, "t2", "a", "label_smoothing", {"epsilon": 0.3})  # same answers: a probe
    again = scorer.submit("t2", "a")
    assert again["public_delta"] is None and "near-duplicate of your submission t1" in \
        again["message"]
    assert scorer.submit("t2", "a") == again  # resubmitting reveals nothing and costs nothing
    assert any(e["kind"] == "near_duplicate" for e in scorer.events())
    # the Ladder on ΔPGR with this campaign's margin (0.05); tests/test_rules.py pins the rule
    sc = scorer.cfg.scoring
    assert rules.ladder(0.43, 0.40, sc.ladder_margin, sc.feedback_decimals) == (
        None, "not better than your best ΔPGR (0.4) by the margin 0.05")
    assert rules.ladder(0.456, 0.40, sc.ladder_margin, sc.feedback_decimals)[0] == 0.46
    public = scorer.leaderboard("public")
    assert [e["trial_id"] for e in public if e["agent"] == "a"] == ["t1"]
    private = scorer.leaderboard("private")
    assert {"t1", "t2", "base"} <= {e["trial_id"] for e in private}
    assert all(len(e["per_seed"]) == 2 for e in private)
    assert next(e for e in private if e["trial_id"] == "base")["delta"] == 0.0


def test_replication_is_one_bit_over_disjoint_seed_sets(scorer):
    _record(scorer, "r1", "r", "confidence_filter", {"keep": 0.4}, seeds=[0])
    assert scorer.submit("r1", "r")["replicated"] is None  # one run: not yet re-run
    _record(scorer, "r2", "r", "confidence_filter", {"keep": 0.4}, seeds=[1])
    fb = scorer.submit("r2", "r")
    pooled = scorer.truth.compare(scorer.config_predictions("confidence_filter", {"keep": 0.4}),
                                  scorer._vanilla, "public")
    assert fb["replicated"] is (pooled["lo"] > 0)
    assert pooled["seeds"] == [0, 1]


def test_the_forum_checks_citations_in_the_scorers_records(scorer):
    """A result post's citations are checked in the scorer's `citable` index, read-only (no
    call into the scorer): an unknown trial and a recorded but unsubmitted one are refused; a
    submitted one shows what the scorer's feedback says, its replication bit kept current."""
    d = scorer.store.path.parent
    forum = Forum(str(d))
    _record(scorer, "c0", "cite", "vanilla")
    for bad in ("nope", "c0"):
        with pytest.raises(ForumError, match="not scored"):
            forum.post("cite", "x", "PGR 0.1", "result", cites=[bad])
    config = ("confidence_filter", {"keep": 0.6})
    _record(scorer, "c1", "cite", *config, seeds=[0])
    assert scorer.submit("c1", "cite")["replicated"] is None
    _record(scorer, "c2", "cite", *config, seeds=[1])
    scorer.submit("c2", "cite")
    views = records.citable(d, ["c0", "c1", "c2", "nope"])
    assert set(views) == {"c1", "c2"}
    for tid, view in views.items():
        fb = scorer.feedback(tid)
        assert view == {"method": config[0], "params": config[1], "agent": "cite",
                        **{k: fb[k] for k in citable.SHOWN}}
    bit = scorer.replicated(*config)
    assert bit is not None and views["c1"]["replicated"] is bit  # rewritten by c2's submission
    post = forum.post("cite", "filter", "see c1", "result", cites=["c1", "c2"])
    assert forum.read()[0]["post_id"] == post["post_id"]
    assert [c["replicated"] for c in forum.read()[0]["cited"]] == [bit, bit]
    before = records.citable(d, list(views))
    scorer.store.execute("DELETE FROM citable WHERE trial_id='c1'")  # stopped in between
    Scorer(str(d), scorer.cfg)  # a restarted scorer indexes what it lacks
    assert records.citable(d, list(views)) == before


def test_scorer_refuses_bad_submissions(scorer):
    _record(scorer, "t3", "b")
    with pytest.raises(ScoreError, match="belongs to another agent"):
        scorer.submit("t3", "a")
    with pytest.raises(ScoreError, match="no finished trial"):
        scorer.submit("nope", "a")
    for i in range(4):
        _record(scorer, f"b{i}", "b")
    for i in range(3):
        scorer.submit(f"b{i}", "b")
    scorer.submit("t3", "b")
    with pytest.raises(ScoreError, match="scoring budget used up"):
        scorer.submit("b3", "b")
    with pytest.raises(ScoreError, match="shape"):
        scorer.record("bad", "b", "vanilla", {}, [0], {}, {0: np.ones((3, 2))})


def test_scorer_numbers_match_an_independent_computation(scorer):
    """Each seed has its own test items; the private part is fixed per data item, and the
    board's PGR is the pooled ratio of mean gains over seeds."""
    preds = _record(scorer, "t9", "c", "confidence_filter", {"keep": 0.7})
    s = scorer.truth.setting
    gains, gaps = [], []
    for seed in scorer.cfg.seeds:
        test = s.splits(seed).test
        private = ~scorer.truth.public_pool[test]
        labels = s.data.labels[test][private]
        truth = scorer.truth.seed(seed)
        t = (preds[seed][private].argmax(1) == labels).mean()
        w, c = truth.weak[private].mean(), truth.ceiling[private].mean()
        gains.append(t - w)
        gaps.append(c - w)
    assert not np.array_equal(s.splits(0).test, s.splits(1).test)  # items redrawn per seed
    scorer.submit("t9", "c")
    entry = next(e for e in scorer.leaderboard("private") if e["trial_id"] == "t9")
    assert entry["pgr"] == pytest.approx(sum(gains) / sum(gaps))


def _acc(k: int, n: int = 100) -> np.ndarray:
    """A 0/1 array with k of n right."""
    return np.arange(n) < k


def test_leaderboard_ranks_by_the_pooled_estimator_not_the_mean_of_ratios(scorer):
    """Seed 0 has a gap of 1 item, so its per-seed PGR explodes: the mean of per-seed PGRs
    ranks A (2.0 and 0.2) above B (0.0 and 0.5), the pooled ratio of mean gains ranks B
    (0.476) above A (0.286). The estimate and so the board follow the pooled one."""
    from aar_ray.lab.truth import estimate

    weak, ceil = [_acc(79), _acc(70)], [_acc(80), _acc(90)]
    a = estimate([_acc(81), _acc(74)], weak, ceil)
    b = estimate([_acc(79), _acc(80)], weak, ceil)
    per_seed = {k: [(t - w) / (c - w) for t, w, c in zip(v, (79, 70), (80, 90), strict=True)]
                for k, v in (("a", (81, 74)), ("b", (79, 80)))}
    assert np.mean(per_seed["a"]) > np.mean(per_seed["b"])  # the other estimator disagrees
    assert a["pgr"] == pytest.approx(6 / 21) and b["pgr"] == pytest.approx(10 / 21)
    # the board orders by the stored pooled `pgr`
    for tid, est in (("pa", a), ("pb", b)):
        scorer.store.execute("INSERT OR REPLACE INTO recorded VALUES (?,?,?,?,?,?,?,?)",
                             (tid, "p", "vanilla", "{}", "[0]", "{}", b"", 0.0))
        scorer.store.execute(
            "INSERT OR REPLACE INTO submissions (trial_id, agent, submitted_at, public, "
            "private, shown, message, flags) VALUES (?,?,?,?,?,?,?,?)",
            (tid, "p", 0.0, "{}", json.dumps({**est, "per_seed": [], "vs_vanilla": None}),
             None, "", "[]"))
    order = [e["trial_id"] for e in scorer.leaderboard("private", 1000) if e["agent"] == "p"]
    assert order == ["pb", "pa"]


@pytest.fixture
def forum(tmp_path):
    scores = {"t1": {"method": "vanilla", "params": {}, "agent": "a", "public_pgr": 0.31}}
    return Forum(str(tmp_path), lambda ids: {i: scores[i] for i in ids if i in scores})


def test_forum_rules(forum, tmp_path):
    with pytest.raises(ForumError, match="must cite scored trials"):
        forum.post("a", "x", "y", "result")
    with pytest.raises(ForumError, match="not scored"):
        forum.post("a", "x", "y", "result", cites=["t404"])
    with pytest.raises(ForumError, match="body must be"):
        forum.post("a", "x", "y" * 9000, "insight")
    with pytest.raises(ForumError, match="kind"):
        forum.post("a", "x", "y", "rumour")
    ok = forum.post("a", "vanilla result", "public PGR 0.31 on seeds 0-1", "result",
                    tags=["vanilla"], cites=["t1"])
    assert ok["flags"] == []
    fake = forum.post("b", "amazing", "I got PGR 0.97 with vanilla", "result", cites=["t1"])
    assert fake["flags"] and "0.97" in fake["flags"][0]
    forum.reply("b", ok["post_id"], "nice")
    with pytest.raises(ForumError, match="no post"):
        forum.reply("b", 999, "hello?")
    top = forum.read(sort="top")
    assert top[0]["cited"][0]["public_pgr"] == 0.31  # the scorer's number, not the author's
    assert forum.read(tag="vanilla")[0]["replies"][0]["body"] == "nice"
    assert [p["title"] for p in forum.read(query="amazing")] == ["amazing"]
    assert forum.post("c", "t", "b", "insight", request_id="r1")["post_id"] == \
        forum.post("c", "t", "b", "insight", request_id="r1")["post_id"]  # retried call
    reopened = Forum(str(tmp_path), lambda ids: {})
    assert reopened.count() == forum.count() == 4


class FakeQueue:
    def __init__(self):
        self.trials = {}

    def enqueue(self, agent, method, params, seeds, request_id=None):
        from aar_ray.w2s.methods import make_method

        make_method(method, params)
        tid = f"t{len(self.trials)}"
        self.trials[tid] = {"agent": agent, "status": "running", "error": None}
        return {"trial_id": tid}

    def status(self, trial_id, agent=None, wait_s=0):
        t = self.trials.get(trial_id)
        if t is None or t["agent"] != agent:
            raise TrialError(f"no trial {trial_id!r} of yours")  # the real queue's refusal
        return {"trial_id": trial_id, **t}


class DeadActor:
    """A restarting actor as Ray reports it: a transient failure, retried later."""

    def __getattr__(self, name):
        def fail(*a, **k):
            raise ActorUnavailableError("restarting", None)
        return fail


def test_tools_turn_bad_input_into_clear_errors(tmp_path):
    tools = LabToolbox("a", tmp_path / "ws", CampaignConfig(), forum=DeadActor(),
                       scorer=DeadActor(), queue=FakeQueue())
    assert {s["name"] for s in tools.schemas()} == set(TOOLS)
    cases = [
        ("nope", {}, "unknown tool"),
        ("run_trial", {"method": "vanila"}, "unknown method 'vanila'"),
        ("run_trial", {"method": "bootstrap", "params": {"beta": 7}}, "out of range"),
        ("run_trial", {}, "'method' is a required property"),
        ("run_trial", "not a dict", "is not of type 'object'"),
        ("trial_status", {"trial_id": "t999"}, "no trial 't999' of yours"),
        ("post", {"title": "x", "body": "y" * 9000, "kind": "insight"}, "is too long"),
        ("read_forum", {}, "temporarily unavailable"),
    ]
    for name, args, message in cases:
        out = tools.call(name, args)
        assert out.is_error and message in out.content, (name, out.content)
        assert out.error == ("transient" if name == "read_forum" else "refusal"), out
    tid = json.loads(tools.call("run_trial", {"method": "vanilla"}).content)["trial_id"]
    out = tools.call("submit", {"trial_id": tid})
    assert out.is_error and "only finished trials" in out.content
    assert not tools.call("write_notebook", {"text": "note"}).is_error
    assert json.loads(tools.call("read_notebook", {}).content)["text"] == "note"


class SimulatedLab:
    """A toolbox over a made-up PGR landscape: aux_confidence with high alpha is best, vanilla
    is at 0.15. The brain is not told; it must find it from coarse feedback (ΔPGR over
    vanilla through the Ladder, and whether a configuration replicated)."""

    VANILLA = 0.15

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.trials, self.best, self.log, self.runs = {}, None, [], {}

    def schemas(self):
        return []

    @staticmethod
    def value(method, params):
        return {"aux_confidence": 0.3 + 0.4 * params.get("alpha", 0.75)}.get(method, 0.15)

    def truth(self, method, params):
        return self.value(method, params) + self.rng.normal(0, 0.02)

    def call(self, name, args):
        from aar_ray.w2s.methods import METHODS, describe

        if name == "list_methods":
            out = [{"name": n} for n in METHODS.names()]
        elif name == "describe_method":
            out = describe(args["name"])
        elif name == "run_trial":
            tid = f"t{len(self.trials)}"
            self.trials[tid] = self.truth(args["method"], args.get("params", {}))
            key = json.dumps([args["method"], args.get("params", {})], sort_keys=True)
            self.runs.setdefault(key, []).append(self.trials[tid])
            self.trials[tid + "key"] = key
            self.log.append(self.trials[tid])
            out = {"trial_id": tid, "seeds": args.get("seeds", [0, 1, 2]),
                   "available_seeds": [0, 1, 2, 3, 4, 5]}
        elif name == "write_method":
            out = {"method": f"custom:agent-0/{args['name']}", "code_hash": "x"}
        elif name == "trial_status":
            out = {"status": "done", "error": None}
        elif name == "submit":
            delta = self.trials[args["trial_id"]] - self.VANILLA
            runs = self.runs[self.trials[args["trial_id"] + "key"]]
            shown = None
            if self.best is None or delta >= self.best + 0.02:
                self.best = shown = round(delta, 2)
            out = {"public_delta": shown, "public_delta_ci": [shown - 0.05, shown + 0.05]
                   if shown is not None else None,
                   "replicated": None if len(runs) < 2 else bool(np.mean(runs) - self.VANILLA
                                                                  > 0.05)}
        elif name == "read_forum":
            out = []
        else:
            out = {"ok": True}
        return ToolResult(json.dumps(out))


def test_offline_brain_replicates_and_builds_only_on_what_replicated():
    """Every new best is re-run on other seeds before anything is built on it; what the brain
    builds on (its incumbents) is better than its average trial; no method takes more than a
    third of its trials plus one replication; it writes one method of its own as code."""
    lifts = []
    for seed in range(5):
        lab = SimulatedLab(seed)
        brain = OfflineBrain("agent-0", "the student's own prior and confidence",
                             BudgetConfig(trials_per_agent=12), seed=seed)
        for _ in range(300):
            if not brain.step(lab):
                break
        results = brain.r.results
        assert len(lab.log) == 12 and brain.r.phase == "done"
        for i, r in enumerate(results[:-1]):
            if r["delta"] is not None and r["delta"] > 0 and not r["replication"]:  # replicate
                nxt = results[i + 1]
                assert nxt["replication"] and (nxt["method"], nxt["params"]) == \
                    (r["method"], r["params"]) and not set(nxt["seeds"]) & set(r["seeds"])
        assert brain.r.incumbents, "nothing replicated"
        assert all(any(r["replication"] and r["replicated"] and r["method"] == c["method"]
                       and r["params"] == c["params"] for r in results)
                   for c in brain.r.incumbents)
        counts = [sum(r["method"] == m for r in results) for m in {r["method"] for r in results}]
        assert max(counts) <= 4 + 1
        assert any(r["method"].startswith("custom:") for r in results)
        lifts.append(np.mean([lab.value(c["method"], c["params"]) for c in brain.r.incumbents])
                     - np.mean([lab.value(r["method"], r["params"]) for r in results]))
    assert np.mean(lifts) > 0.05, lifts


def test_offline_brain_state_round_trips():
    lab = SimulatedLab()
    a = OfflineBrain("agent-1", "ensembles", BudgetConfig(trials_per_agent=6), seed=1)
    for _ in range(4):
        a.step(lab)
    b = OfflineBrain("agent-1", "ensembles", BudgetConfig(trials_per_agent=6), seed=1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b._choose(lab) == a._choose(lab)


def test_agent_processes_do_not_import_torch():
    """A fleet of agent actors must stay light (≈ 55 MB each, not ≈ 240 MB): the method
    catalog comes from the trial queue, so nothing on an agent's import path loads torch,
    scipy or pyarrow. That path includes aar_ray.lab.actors: Ray imports an actor's class
    module to deserialise a handle to it (every agent holds forum, scorer and queue handles)."""
    import subprocess
    import sys

    code = ("import sys, aar_ray.lab.agent, aar_ray.lab.actors, aar_ray.lab.tools, "
            "aar_ray.brains.offline, aar_ray.brains.claude; "
            "print(*[m for m in ('torch', 'scipy', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_agent_budget_is_capped_by_a_share_of_the_campaign_budget():
    from aar_ray.brains import agent_budget

    cfg = CampaignConfig(agents=4)
    cfg.budget.dollars_total, cfg.budget.dollars_per_agent = 10.0, 5.0
    assert agent_budget(cfg).dollars_per_agent == 2.5  # the share is tighter
    cfg.budget.dollars_per_agent = 1.0
    assert agent_budget(cfg).dollars_per_agent == 1.0  # the agent's own limit is tighter
    cfg.budget.dollars_total = cfg.budget.dollars_per_agent = 0.0
    assert agent_budget(cfg).dollars_per_agent == 0  # unlimited stays unlimited
    cfg.budget.tokens_total = 1000
    assert agent_budget(cfg).tokens_per_agent == 250
