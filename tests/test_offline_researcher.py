"""The offline researcher searches each method's parameters with an Optuna study, continues
the same study after a restart, and lets only replicated forum results migrate into it."""
from __future__ import annotations

import json

import numpy as np
import optuna

from aar_ray.brains.base import ToolResult
from aar_ray.brains.offline import HIDDEN, OfflineBrain
from aar_ray.config import BudgetConfig
from aar_ray.w2s.methods import describe

METHOD = "aux_confidence"


def brain_knowing(method: str = METHOD, **kw) -> OfflineBrain:
    b = OfflineBrain("agent-3", "confidence", BudgetConfig(trials_per_agent=12), seed=3, **kw)
    b._know(method, describe(method)["params"], method)
    return b


def observe(b: OfflineBrain, params: dict, delta: float | None) -> None:
    b.r.results.append({"method": METHOD, "params": params, "delta": delta, "seeds": [0]})


def test_the_study_is_told_every_observation_and_learns_from_it():
    b = brain_knowing()
    spec = describe(METHOD)["params"]["properties"]["alpha"]
    lo, hi = spec["minimum"], spec["maximum"]
    rng = np.random.default_rng(0)
    for a in rng.uniform(lo, hi, 12):  # ΔPGR grows with alpha; low ones are hidden
        observe(b, {"alpha": float(a)}, float(a) if a > (lo + hi) / 2 else None)
    study = b.study(METHOD)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 12 and sum(t.value == HIDDEN for t in done) == sum(
        r["delta"] is None for r in b.r.results)
    # TPE models the good region: over many agents' seeds, proposals sit in the upper half
    highs = []
    for seed in range(20):
        other = brain_knowing(campaign_seed=seed)
        other.r.results = list(b.r.results)
        highs.append(other._propose(METHOD)["alpha"] > (lo + hi) / 2)
    assert np.mean(highs) >= 0.75, highs
    assert b._propose(METHOD) == b._propose(METHOD)  # the same observations, the same ask


def test_a_resumed_agent_continues_the_same_study():
    a = brain_knowing()
    for i in range(5):
        observe(a, a._propose(METHOD), 0.01 * i if i % 2 else None)
    b = brain_knowing()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [(t.params, t.value) for t in b.study(METHOD).trials] == \
        [(t.params, t.value) for t in a.study(METHOD).trials]
    assert b._propose(METHOD) == a._propose(METHOD)


class Forum:
    def __init__(self, cited):
        self.cited = cited

    def call(self, name, args):
        assert name == "read_forum" and args["tag"] == "replicated"
        return ToolResult(json.dumps([{"cited": self.cited}]))


def test_only_replicated_results_migrate_into_the_study():
    b = brain_knowing()
    forum = Forum([
        {"method": METHOD, "params": {"alpha": 0.9}, "replicated": True, "public_delta": 0.2},
        {"method": METHOD, "params": {"alpha": 0.1}, "replicated": False, "public_delta": 0.3},
        {"method": METHOD, "params": {"alpha": 0.5}, "replicated": None, "public_delta": 0.3},
        {"method": "not_known_here", "params": {}, "replicated": True, "public_delta": 0.1}])
    b._migrate(forum)
    b._migrate(forum)  # read twice, kept once
    assert b.r.migrated == [{"method": METHOD, "params": {"alpha": 0.9}, "delta": 0.2}]
    # what the post left out is the method's default
    assert [(t.params, t.value) for t in b.study(METHOD).trials] == [
        ({"alpha": 0.9, "warmup": 0.2}, 0.2)]
