"""The sweep explorer plays by the agents' rules: Tune learns only the coarse public feedback
the scorer gave, and every sweep trial is scored by the scorer. Plus the parts that need no Ray:
the search space against the method registry, the budgets, the W&B source, `aar compare`."""
from __future__ import annotations

import json
import sqlite3
import time

import optuna
import pytest
import ray

from aar_ray.config import BudgetConfig, CampaignConfig, ConfigError, ConfirmConfig, save_campaign
from aar_ray.lab.sweep import HIDDEN, METRIC, SearchSpace, public_score, sampler
from aar_ray.observe.tracking import source
from aar_ray.results import records
from aar_ray.results.compare import campaign_facts, format_compare
from aar_ray.w2s.methods import METHODS, describe, make_method


def test_search_space_covers_the_registry_with_valid_params():
    catalog = {name: describe(name) for name in METHODS.names()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace(catalog)
    seen = set()
    for _ in range(200):
        trial = study.ask()
        space(trial)
        method = trial.params["method"]
        params = {k.split("/", 1)[1]: v for k, v in trial.params.items() if k != "method"}
        assert all(k.startswith(f"{method}/") for k in trial.params if k != "method")
        make_method(method, params)  # raises if a value is outside the registry's range
        assert set(params) == set(catalog[method]["params"]["properties"])
        seen.add(method)
        study.tell(trial, 0.0)
    assert seen == set(catalog)


def _proposals(search: str, campaign_seed: int, n: int = 10) -> list[dict]:
    study = optuna.create_study(sampler=sampler(search, campaign_seed))
    space, out = SearchSpace({name: describe(name) for name in METHODS.names()}), []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        out.append(trial.params)
        study.tell(trial, 0.0)
    return out


def test_tpe_and_random_arms_share_no_start_up_draws():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe, rnd = _proposals("optuna", 1), _proposals("random", 1)
    # the old shared seed made the arms propose the same first 10 configurations in lockstep
    assert not [i for i, (a, b) in enumerate(zip(tpe, rnd, strict=True)) if a == b]
    assert _proposals("random", 1) == rnd  # still reproducible per arm and seed


def test_public_score_is_the_ladder_feedback():
    assert public_score({"public_delta": 0.07, "public_pgr": 0.41}) == 0.07
    assert public_score({"public_delta": None, "public_pgr": None}) == HIDDEN


def test_sweep_budget_is_its_own_and_named():
    cfg = CampaignConfig(agents=3, budget=BudgetConfig(trials_per_agent=4), explorer="sweep")
    cfg.validate()
    assert cfg.sweep_agent == "sweep-optuna"
    assert cfg.trial_budget("sweep-optuna") == cfg.submission_budget("sweep-optuna") == 12
    assert cfg.trial_budget("agent-0") == 4  # agents keep theirs
    assert cfg.submission_budget("agent-0") == cfg.scoring.submissions_per_agent
    cfg.sweep.trials = 5
    assert cfg.exploration_trials() == cfg.trial_budget("sweep-optuna") == 5
    cfg.explorer = "agents"  # with agents exploring, a sweep id gets no special budget
    assert cfg.trial_budget("sweep-optuna") == 4
    bad = CampaignConfig(budget=BudgetConfig(trials_per_agent=0), explorer="sweep")
    with pytest.raises(ConfigError, match="sweep.trials"):
        bad.validate()
    assert (source("sweep-optuna"), source("sweep-random"), source("agent-2")) == (
        "sweep:optuna", "sweep:random", "lab")


def _fake_campaign(path, explorer, trials, confirmed):
    path.mkdir()
    save_campaign(CampaignConfig(explorer=explorer), path / "config.yaml")
    (path / "summary.json").write_text(json.dumps({
        "confirmed": confirmed, "public_private_spearman": 0.5, "max_method_share": 0.4,
        "min_detectable_delta": 0.05, "verdict": "a sentence"}))
    with sqlite3.connect(path / "trials.sqlite") as db:
        db.execute("CREATE TABLE trials (seq INTEGER, agent TEXT, kind TEXT, method TEXT, "
                   "params TEXT, seeds TEXT, provenance TEXT, status TEXT)")
        db.executemany("INSERT INTO trials VALUES (?,?,?,?,?,'[]','{}',?)",
                       [(i, "x", kind, m, json.dumps(p), status)
                        for i, (kind, m, p, status) in enumerate(trials)])


def test_compare_reads_best_confirmed_and_trials_to_reach_it(tmp_path):
    best = {"method": "info_max", "params": {"balance": 2.0}, "pgr": 0.42, "delta": 0.08,
            "ci_low": 0.03, "ci_high": 0.13, "p_holm": 0.01, "audit": {}}
    _fake_campaign(tmp_path / "sweep", "sweep", [
        ("baseline", "vanilla", {}, "done"), ("agent", "vanilla", {}, "done"),
        ("agent", "ensemble", {"members": 3}, "error"),
        ("agent", "info_max", {"balance": 2.0}, "done"),
        ("agent", "info_max", {"balance": 2.0}, "done"),
        ("confirm", "info_max", {"balance": 2.0}, "done")],
        [{**best, "delta": 0.02, "method": "vanilla", "params": {}}, best])
    _fake_campaign(tmp_path / "lab", "agents", [("agent", "vanilla", {}, "done")], [])
    a, b = campaign_facts(tmp_path / "sweep"), campaign_facts(tmp_path / "lab")
    assert a["explorer"] == "sweep-optuna" and b["explorer"] == "9 agents"
    assert (a["trials"], a["failed"], a["configs"]) == (4, 1, 3)
    assert a["best"]["delta"] == 0.08 and a["trials_to_best"] == 3
    assert a["methods"] == ["ensemble", "info_max", "vanilla"]
    assert b["best"] is None and b["trials_to_best"] is None
    text = format_compare(a, b)
    assert "+0.080 [+0.030, +0.130] (info_max)" in text and "none confirmed" in text
    assert "unequal budgets (4 vs 1 trials)" in text


@pytest.mark.ray
def test_sweep_sees_only_public_feedback_and_is_scored(local_ray, small_setting, fast_student,
                                                       cache_dir, tmp_path):
    from aar_ray.lab.campaign import new_campaign_dir, run_baseline, start_lab
    from aar_ray.lab.sweep import explore_task

    cfg = CampaignConfig(name="sweep", confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
                         setting=small_setting, student=fast_student,
                         seeds=[0, 1], agents=1, budget=BudgetConfig(trials_per_agent=3),
                         explorer="sweep", root=str(tmp_path), cache_dir=cache_dir)
    cfg.validate()
    lab = start_lab(cfg, new_campaign_dir(cfg), with_agents=False)
    assert lab.agents == []
    run_baseline(lab)
    received = ray.get(explore_task.remote(lab, time.time() + 600))
    agent = cfg.sweep_agent

    # every sweep trial went through the queue and was scored by the scorer
    scored = {s["trial_id"]: s for s in records.submissions(lab.dir) if s["agent"] == agent}
    assert len(received) == len(scored) == 3
    assert {r["lab_trial"] for r in received} == set(scored)
    assert {r["agent"] for r in records.queued_trials(lab.dir)} == {"baseline", agent}

    for r in received:
        # Tune's objective is the feedback the scorer gives this agent, nothing else
        feedback = ray.get(lab.scorer.submit.remote(r["lab_trial"], agent))  # free resubmit
        assert r[METRIC] == public_score(feedback)
        ours = {k for k in r if k not in TUNE_KEYS}
        assert ours == {METRIC, "lab_trial", "method", "params", "message"}
        assert (r["method"], r["params"]) == (scored[r["lab_trial"]]["method"],
                                              scored[r["lab_trial"]]["params"])
        # no private number reaches Tune, in any key
        private = scored[r["lab_trial"]]["private"]
        text = json.dumps(received)
        for x in _numbers(private):
            assert repr(x) not in text, f"private value {x} reached Tune"
    with pytest.raises(ray.exceptions.RayTaskError, match="trial budget used up"):
        ray.get(lab.queue.enqueue.remote(agent, "vanilla", {}, None, "agent"))
    # a resumed sweep counts what it ran before: nothing is left, nothing more is scored
    assert ray.get(explore_task.remote(lab, time.time() + 600)) == []
    assert len([s for s in records.submissions(lab.dir) if s["agent"] == agent]) == 3


TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id",
             "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip",
             "config", "time_since_restore", "iterations_since_restore", "experiment_tag"}


def _numbers(x):
    """Every float in a nested record, except round ones a coarse feedback could share."""
    if isinstance(x, dict):
        return [n for v in x.values() for n in _numbers(v)]
    if isinstance(x, list):
        return [n for v in x for n in _numbers(v)]
    return [x] if isinstance(x, float) and round(x, 4) != x else []
