"""The sweep explorer: the baseline a fleet of research agents must beat. A Ray Tune run
(Optuna's TPE sampler, or its random sampler) over the method registry replaces the agents and
plays by their rules: it enqueues each configuration through the same trial queue under one
agent id (`sweep-<search>`), submits it to the same scorer, and learns only the coarse public
feedback an agent gets. It cannot write a new method as code; the agents can.

The search space is Optuna define-by-run: the method is a categorical, and each method's
parameters, with the ranges its registry entry declares, exist only in trials of that method.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from aar_ray.brains.space import suggest, suggestion
from aar_ray.lab import NAMESPACE

METRIC = "public_score"  # what Tune optimises: nothing but the scorer's feedback
# A score the Ladder hid ("not better than your best by the margin") or a failed trial: Optuna
# needs a number, and this one ranks the trial below every score shown, as an agent reads it
HIDDEN = float("-inf")
ACTIVE = ("queued", "running")


def public_score(feedback: dict[str, Any]) -> float:
    """The one number of the scorer's feedback a sweep optimises: the Ladder-gated, rounded
    public ΔPGR over vanilla, or HIDDEN when the Ladder did not show it."""
    shown = feedback["public_delta"]
    return HIDDEN if shown is None else shown


class SearchSpace:
    """A define-by-run space over `catalog` (the queue's `method_catalog`). Parameters are named
    `<method>/<param>`, which Tune unflattens into config[method][param]. A class, not a
    closure: Tune pickles the searcher, space included, when it saves its state."""

    def __init__(self, catalog: dict[str, dict[str, Any]]) -> None:
        for m, d in catalog.items():  # a parameter with no range is refused now, not mid-sweep
            for k, spec in d["params"]["properties"].items():
                suggestion(m, k, spec)
        self.schemas = {m: d["params"] for m, d in sorted(catalog.items())}

    def __call__(self, trial: Any) -> None:
        method = trial.suggest_categorical("method", list(self.schemas))
        suggest(trial, method, self.schemas[method], prefix=f"{method}/")


def _finished(queue: Any, trial_id: str, agent: str) -> dict[str, Any]:
    status = ray.get(queue.status.remote(trial_id, agent, 600))
    while status["status"] in ACTIVE:
        status = ray.get(queue.status.remote(trial_id, agent, 600))
    return status


def _trainable(agent: str):
    """One Tune trial = one lab trial, run the way an agent runs it: enqueue, wait, submit,
    and report the feedback. The trial's work runs in the queue's Ray task, not here."""

    def run(config: dict[str, Any]) -> None:
        queue = ray.get_actor("trials", namespace=NAMESPACE)
        scorer = ray.get_actor("scorer", namespace=NAMESPACE)
        method = config["method"]
        params = config.get(method, {})
        tid = ray.get(queue.enqueue.remote(agent, method, params, None, "agent"))["trial_id"]
        status = _finished(queue, tid, agent)
        if status["status"] != "done":  # a failed trial is worse than any scored one
            tune.report({METRIC: HIDDEN, "lab_trial": tid, "method": method, "params": params,
                         "error": status["error"]})
            return
        feedback = ray.get(scorer.submit.remote(tid, agent))
        tune.report({METRIC: public_score(feedback), "lab_trial": tid, "method": method,
                     "params": params, "message": feedback["message"]})

    return run


SAMPLERS = {"optuna": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}


def sampler(search: str, campaign_seed: int, done: int = 0) -> optuna.samplers.BaseSampler:
    """The arm's sampler, seeded from (campaign seed, arm, trials already run). TPE starts with
    random draws, so with one shared seed the TPE and random arms would propose the same first
    configurations and stop being independent; a resumed sweep must not replay its first draws."""
    state = np.random.SeedSequence([campaign_seed, list(SAMPLERS).index(search), done])
    return SAMPLERS[search](seed=int(state.generate_state(1)[0]))


def explore(lab: Any, deadline: float) -> list[dict[str, Any]]:
    """Run the campaign's sweep (`lab.cfg.sweep`) until its trial budget or `deadline` ends;
    returns what Tune received, one dict per Tune trial. On resume, the trials the sweep ran
    before count against its budget and the Optuna study (kept in the campaign directory)
    remembers their feedback; a trial that was in flight at the stop is finished and scored."""
    cfg = lab.cfg
    agent = cfg.sweep_agent
    before = ray.get(lab.queue.list.remote(agent=agent, kind="agent"))
    for t in before:
        if _finished(lab.queue, t["trial_id"], agent)["status"] == "done":
            ray.get(lab.scorer.submit.remote(t["trial_id"], agent))  # free if done before
    remaining = cfg.exploration_trials() - len(before)
    if remaining <= 0 or time.time() >= deadline:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    catalog = ray.get(lab.queue.method_catalog.remote())
    searcher = OptunaSearch(
        SearchSpace(catalog), metric=METRIC, mode="max",
        sampler=sampler(cfg.sweep.search, cfg.seed, len(before)),
        storage=optuna.storages.RDBStorage(f"sqlite:///{Path(lab.dir) / 'sweep.sqlite'}"),
        study_name=agent)
    tuner = tune.Tuner(
        # no CPU: the work runs in the queue's tasks. Tune refuses an empty bundle, so ask for
        # a token 1 MiB of Ray's logical memory resource instead
        tune.with_resources(_trainable(agent), {"cpu": 0, "memory": 2**20}),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=remaining,
            # as many proposals in flight as the queue runs at once: more would only wait
            max_concurrent_trials=ray.get(lab.queue.slots.remote()),
            time_budget_s=max(1.0, deadline - time.time())),
        run_config=tune.RunConfig(name=agent, storage_path=str(Path(lab.dir) / "tune"),
                                  verbose=0))
    results = tuner.fit()
    return [r.metrics for r in results if r.metrics]


explore_task = ray.remote(num_cpus=0)(explore)  # the campaign awaits it like an agent's run
