"""The offline researcher: an honest search policy over the registered methods and a few
methods it writes itself, used when no Claude API key is set. It sees only tool outputs:
method descriptions, the scorer's coarse feedback (public ΔPGR over vanilla with its CI, when
the Ladder allows, and whether a configuration replicated) and the forum.

Each agent is an island of an island model. Within the methods its direction favours it picks
parameters through an Optuna study per method (ask/tell, TPE, seeded by campaign, agent and
method), told every feedback it got; the forum is the migration: replicated results other
agents posted are added to its studies. The studies are rebuilt from the observations kept in
the agent's state, so a resumed agent continues the same studies and proposes what it would have.

Three habits keep it from chasing noise:
- **Replicate before exploiting.** A configuration that earns a new best ΔPGR is re-run on
  seeds its first trial did not use before anything is built on it; only a configuration the
  scorer says replicated becomes an incumbent to build on, and the forum hears either way.
- **Only replicated results migrate.** From the forum it builds only on configurations the
  scorer says replicated, so one lucky number cannot pull the whole fleet onto one method.
- **A cap per method.** No more than a third of an agent's trials go to one method.
It starts where its direction points (methods whose descriptions share words with it) and,
once, writes a method of its own as code (`compositions.py`), which its studies then tune like
any other: its space is larger than the registry's. Nothing in it knows which method is good.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna

from aar_ray.brains.base import Toolbox
from aar_ray.brains.compositions import COMPOSITIONS
from aar_ray.brains.space import suggest
from aar_ray.config import BudgetConfig

STOP = set("a an and are as at be by can could do does for from has how in is it its may "
           "might not of on or so than that the their them there these they this to too "
           "use what when where which who why will with would your you own one more".split())


def words(text: str) -> set[str]:
    """Crude stems of the content words, for matching a direction to method descriptions."""
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


@dataclass
class Research:
    """Everything the offline researcher knows and plans: saved with the agent's state."""

    phase: str = "start"  # start -> research -> done
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> params schema
    prior: dict[str, float] = field(default_factory=dict)  # method -> direction affinity
    results: list[dict[str, Any]] = field(default_factory=list)  # own trials and feedback
    pending: dict[str, Any] | None = None  # the trial awaiting its result
    replicate: dict[str, Any] | None = None  # a new best to re-run on other seeds first
    incumbents: list[dict[str, Any]] = field(default_factory=list)  # replicated configs
    started: int = 0  # trials launched
    seeds: list[int] = field(default_factory=list)  # every seed a trial may use
    wrote_method: bool = False
    migrated: list[dict[str, Any]] = field(default_factory=list)  # replicated, from the forum


# Shown feedback is the Ladder-gated public ΔPGR; a hidden one ("not better than your best by
# the margin") ranks below every shown score, exactly as the sweep explorer tells its study.
HIDDEN = float("-inf")
STARTUP = 2  # random proposals per method before TPE models it: agents run ~8 trials in all


class OfflineBrain:
    def __init__(self, agent_id: str, direction: str, budget: BudgetConfig,
                 seed: int = 0, wait_s: float = 60.0, campaign_seed: int = 0) -> None:
        self.agent_id, self.direction, self.budget = agent_id, direction, budget
        self.wait_s = wait_s
        self.seed_key = [campaign_seed, seed, sum(map(ord, agent_id))]
        self.rng = np.random.default_rng(self.seed_key)
        self.r = Research()

    # ---- Brain protocol ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"research": asdict(self.r), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.r = Research(**state["research"])
        self.rng.bit_generator.state = state["rng"]

    def step(self, tools: Toolbox) -> bool:
        if self.r.phase == "start":
            return self._start(tools)
        if self.r.pending:
            return self._follow_up(tools)
        if self.r.phase == "done":
            return False
        if self.budget.trials_per_agent and self.r.started >= self.budget.trials_per_agent:
            return self._wrap_up(tools)
        return self._launch(tools)

    # ---- phases ------------------------------------------------------------------------------

    def _start(self, tools: Toolbox) -> bool:
        listed = tools.call("list_methods", {}).data() or []
        for m in listed:
            d = tools.call("describe_method", {"name": m["name"]}).data()
            if not d:
                continue
            self._know(m["name"], d["params"], " ".join([d["name"], d["summary"], *d["tags"]]))
        if not self.r.schemas:
            return True  # tools unavailable; try again next step
        favourites = sorted(self.r.prior, key=lambda k: -self.r.prior[k])[:2]
        tools.call("post", {"title": f"{self.agent_id}: starting point",
                            "body": f"My direction: {self.direction}\nI will begin with "
                                    f"{' and '.join(favourites)}; I replicate a promising "
                                    "result on other seeds before building on it.",
                            "kind": "hypothesis", "tags": ["plan"]})
        self.r.phase = "research"
        return True

    def _know(self, name: str, schema: dict[str, Any], text: str) -> None:
        self.r.schemas[name] = schema
        self.r.prior[name] = 1.0 + 2.0 * len(words(self.direction) & words(text))

    def _launch(self, tools: Toolbox) -> bool:
        seeds: list[int] | None = None
        replicating = self.r.replicate
        if replicating:
            method, params = replicating["method"], replicating["params"]
            seeds = [s for s in self.r.seeds if s not in replicating["seeds"]] or None
            self.r.replicate = None
        elif not self.r.wrote_method and self.r.started >= 2:
            method, params = self._write_method(tools)
        else:
            method, params = self._choose(tools)
        args = {"method": method, "params": params, **({"seeds": seeds} if seeds else {})}
        out = tools.call("run_trial", args)
        data = out.data()
        if out.is_error or not data:
            if "budget" in out.content:
                self.r.started = self.budget.trials_per_agent
            else:  # a bad sample: remember it so the search moves on
                self.r.results.append({"method": method, "params": params, "delta": None,
                                       "error": out.content[:200]})
            return True
        self.r.seeds = self.r.seeds or data.get("available_seeds", [])
        self.r.pending = {"trial_id": data["trial_id"], "method": method, "params": params,
                          "seeds": data["seeds"], "replication": bool(replicating)}
        self.r.started += 1
        return True

    def _write_method(self, tools: Toolbox) -> tuple[str, dict[str, Any]]:
        """Write one method of its own (the composition nearest its direction) and run it."""
        self.r.wrote_method = True
        mine = words(self.direction)
        name = max(sorted(COMPOSITIONS), key=lambda n: (
            len(mine & words(COMPOSITIONS[n]["summary"])), self.rng.random()))
        spec = COMPOSITIONS[name]
        out = tools.call("write_method", {"name": name, "code": spec["source"]}).data()
        if not out:
            return self._choose(tools)
        self._know(out["method"], {"properties": spec["properties"]}, spec["summary"])
        self.r.prior[out["method"]] += 2.0  # its own idea: worth a second look
        return out["method"], self._propose(out["method"])

    def _follow_up(self, tools: Toolbox) -> bool:
        p = self.r.pending
        st = tools.call("trial_status",
                        {"trial_id": p["trial_id"], "wait_s": self.wait_s}).data()
        if not st or st["status"] in ("queued", "running"):
            return True
        self.r.pending = None
        if st["status"] == "error":
            self.r.results.append({**p, "delta": None, "error": st["error"]})
            tools.call("post", {"title": f"{p['method']} failed", "kind": "error",
                                "body": f"Trial {p['trial_id']} ({p['method']} "
                                        f"{json.dumps(p['params'])}) failed: {st['error']}",
                                "tags": [p["method"][:40]]})
            return True
        fb = tools.call("submit", {"trial_id": p["trial_id"]}).data() or {}
        delta, replicated = fb.get("public_delta"), fb.get("replicated")
        self.r.results.append({**p, "delta": delta, "replicated": replicated})
        if p["replication"]:
            outcome = "replicated" if replicated else "did not replicate"
            if replicated:
                self.r.incumbents.append({k: p[k] for k in ("method", "params")})
        elif delta is not None and delta > 0:
            outcome = "new best over vanilla, replicating next"
            self.r.replicate = {k: p[k] for k in ("method", "params", "seeds")}
        else:
            outcome = "no gain"
        ci = fb.get("public_delta_ci")
        shown = (f"public ΔPGR over vanilla {delta:+.2f} (95% CI {ci[0]:+.2f} to {ci[1]:+.2f})"
                 if delta is not None and ci else "the scorer withheld ΔPGR (not a new best)")
        tags = [p["method"][:40], *(["replicated"] if replicated else [])]
        tools.call("post", {"title": f"{p['method']}: {outcome}", "kind": "result",
                            "cites": [p["trial_id"]], "tags": tags,
                            "body": f"{p['method']} with {json.dumps(p['params'])} on seeds "
                                    f"{p['seeds']}: {shown}; replicated: {replicated}."})
        tools.call("write_notebook", {"text": f"- {p['trial_id']} {p['method']} "
                                              f"{json.dumps(p['params'])} -> Δ {delta}, "
                                              f"replicated {replicated}"})
        return True

    def _wrap_up(self, tools: Toolbox) -> bool:
        tried = sorted({r["method"] for r in self.r.results})
        best = self.r.incumbents[-1] if self.r.incumbents else None
        body = (f"Tried {', '.join(tried)}. "
                + (f"Replicated: {best['method']} {json.dumps(best['params'])}."
                   if best else "Nothing I found replicated on fresh seeds."))
        tools.call("post", {"title": f"{self.agent_id}: summary", "body": body,
                            "kind": "insight", "tags": ["summary"]})
        self.r.phase = "done"
        return False

    # ---- the search policy -------------------------------------------------------------------

    def _migrate(self, tools: Toolbox) -> list[dict[str, Any]]:
        """Configurations to build on from the forum: only those the scorer says replicated
        (one lucky run never migrates). Each new one is kept, with the ΔPGR its author was
        shown, and joins this agent's study of that method."""
        posts = tools.call("read_forum", {"tag": "replicated", "sort": "top",
                                          "limit": 10}).data() or []
        seen = {json.dumps([c["method"], c["params"]], sort_keys=True) for c in self.r.migrated}
        for post in posts:
            for c in post.get("cited", []):
                key = json.dumps([c.get("method"), c.get("params")], sort_keys=True)
                if c.get("replicated") and c.get("method") in self.r.schemas and key not in seen:
                    seen.add(key)
                    self.r.migrated.append({"method": c["method"], "params": c["params"],
                                            "delta": c.get("public_delta")})
        return self.r.migrated

    def _choose(self, tools: Toolbox) -> tuple[str, dict[str, Any]]:
        """Which method (the researcher's call: direction, cap, incumbents), then its
        parameters (the method's Optuna study)."""
        done = len(self.r.results)
        horizon = max(1.0, 0.4 * (self.budget.trials_per_agent or 10))
        explore = max(0.25, 1.0 - done / horizon)
        cap = max(1, math.ceil((self.budget.trials_per_agent or 9) / 3))
        used = {n: sum(r["method"] == n for r in self.r.results) for n in self.r.schemas}
        migrated = self._migrate(tools)
        if self.rng.random() > explore:
            known = [c for c in self.r.incumbents + migrated if used.get(c["method"], 0) < cap]
            if known:
                return (method := known[self.rng.integers(len(known))]["method"]), \
                    self._propose(method)
        names = [n for n in sorted(self.r.schemas) if used[n] < cap] or sorted(self.r.schemas)
        w = np.array([self.r.prior[n] / (1 + used[n]) for n in names])
        name = names[self.rng.choice(len(names), p=w / w.sum())]
        return name, self._propose(name)

    def study(self, method: str) -> optuna.Study:
        """The agent's study of `method`, rebuilt from what it observed: its own trials (shown
        ΔPGR, HIDDEN when withheld, failed when the trial failed) and the migrated results.
        The sampler's seed includes the number of observations, so a resumed agent proposes
        exactly what it would have without the restart."""
        schema = self.r.schemas[method]
        seen = [(r["params"], r["delta"], r.get("error")) for r in self.r.results
                if r["method"] == method] + \
               [(c["params"], c["delta"], None) for c in self.r.migrated if c["method"] == method]
        state = np.random.SeedSequence([*self.seed_key, sum(map(ord, method)), len(seen)])
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per proposal: no chatter
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
            seed=int(state.generate_state(1)[0]), n_startup_trials=STARTUP))
        defaults = {k: spec["default"] for k, spec in schema.get("properties", {}).items()
                    if "default" in spec}  # a result posted with some parameters left out
        for params, delta, error in seen:  # replay each observation through the same space
            study.enqueue_trial({**defaults, **params})
            trial = study.ask()
            suggest(trial, method, schema)
            if error:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, HIDDEN if delta is None else delta)
        return study

    def _propose(self, method: str) -> dict[str, Any]:
        return suggest(self.study(method).ask(), method, self.r.schemas[method])
