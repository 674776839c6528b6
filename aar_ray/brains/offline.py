"""The offline researcher: an honest search policy over the registered methods, used when no
Claude API key is set. It sees only tool outputs: method descriptions, the scorer's coarse
feedback and the forum.

It explores first, biased towards methods whose descriptions share words with its starting
direction, then exploits: it perturbs the best configuration it knows of, its own or one that
the forum reports with a scorer-backed number. Nothing in it knows which method is good.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from aar_ray.brains.base import Toolbox, ToolResult
from aar_ray.config import BudgetConfig

STOP = set("a an and are as at be by can could do does for from has how in is it its may "
           "might not of on or so than that the their them there these they this to too "
           "use what when where which who why will with would your you own one more".split())


def words(text: str) -> set[str]:
    """Crude stems of the content words, for matching a direction to method descriptions."""
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


class OfflineBrain:
    def __init__(self, agent_id: str, direction: str, budget: BudgetConfig,
                 seed: int = 0, wait_s: float = 60.0) -> None:
        self.agent_id, self.direction, self.budget = agent_id, direction, budget
        self.wait_s = wait_s
        self.rng = np.random.default_rng([seed, sum(map(ord, agent_id))])
        self.s: dict[str, Any] = {"phase": "start", "methods": {}, "prior": {}, "results": [],
                                  "pending": None, "started": 0, "forum": [], "best": None,
                                  "sigma": 0.2}

    # ---- Brain protocol ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.s = state["s"]
        self.rng.bit_generator.state = state["rng"]

    def step(self, tools: Toolbox) -> bool:
        if self.s["phase"] == "start":
            return self._start(tools)
        if self.s["pending"]:
            return self._follow_up(tools)
        if self.s["phase"] == "done":
            return False
        if self.budget.trials_per_agent and self.s["started"] >= self.budget.trials_per_agent:
            return self._wrap_up(tools)
        if self.s["started"] and self.s["started"] % 2 == 0:
            self._read_forum(tools)
        return self._launch(tools)

    # ---- phases ------------------------------------------------------------------------------

    def _start(self, tools: Toolbox) -> bool:
        listed = _json(tools.call("list_methods", {})) or []
        mine = words(self.direction)
        for m in listed:
            d = _json(tools.call("describe_method", {"name": m["name"]}))
            if not d:
                continue
            self.s["methods"][m["name"]] = d["params"]
            overlap = len(mine & words(" ".join([d["name"], d["summary"], *d["tags"]])))
            self.s["prior"][m["name"]] = 1.0 + 2.0 * overlap
        if not self.s["methods"]:
            return True  # tools unavailable; try again next step
        self._read_forum(tools)
        favourites = sorted(self.s["prior"], key=lambda k: -self.s["prior"][k])[:2]
        tools.call("post", {"title": f"{self.agent_id}: starting point",
                            "body": f"My direction: {self.direction}\nI will begin with "
                                    f"{' and '.join(favourites)}, then follow what scores best.",
                            "kind": "hypothesis", "tags": ["plan"]})
        self.s["phase"] = "research"
        return True

    def _launch(self, tools: Toolbox) -> bool:
        method, params = self._choose()
        out = tools.call("run_trial", {"method": method, "params": params})
        data = _json(out)
        if out.is_error or not data:
            if "budget" in out.content:
                self.s["started"] = self.budget.trials_per_agent
            else:  # a bad sample: remember it so the search moves on
                self.s["results"].append({"method": method, "params": params, "pgr": None,
                                          "error": out.content[:200]})
            return True
        self.s["pending"] = {"trial_id": data["trial_id"], "method": method, "params": params}
        self.s["started"] += 1
        return True

    def _follow_up(self, tools: Toolbox) -> bool:
        p = self.s["pending"]
        st = _json(tools.call("trial_status", {"trial_id": p["trial_id"], "wait_s": self.wait_s}))
        if not st or st["status"] in ("queued", "running"):
            return True
        self.s["pending"] = None
        if st["status"] == "error":
            self.s["results"].append({**p, "pgr": None, "error": st["error"]})
            tools.call("post", {"title": f"{p['method']} failed", "kind": "error",
                                "body": f"Trial {p['trial_id']} ({p['method']} "
                                        f"{json.dumps(p['params'])}) failed: {st['error']}",
                                "tags": [p["method"]]})
            return True
        fb = _json(tools.call("submit", {"trial_id": p["trial_id"]})) or {}
        shown = fb.get("public_pgr")
        self.s["results"].append({**p, "pgr": shown})
        if shown is not None and (self.s["best"] is None or shown > self.s["best"]["pgr"]):
            self.s["best"] = {**p, "pgr": shown}
        # (1+1)-ES step size: widen the local search after a success or when the scorer saw
        # no real change (a near-duplicate), narrow it after a miss
        widen = shown is not None or "near-duplicate" in str(fb.get("message", ""))
        self.s["sigma"] = min(0.3, self.s["sigma"] * 1.5) if widen \
            else max(0.03, self.s["sigma"] * 0.8)
        verdict = (f"public PGR {shown} (scorer), my new best" if shown is not None else
                   "no new best: the scorer withheld the score (below my best by the margin)")
        outcome = "new best" if shown is not None else "no gain"
        tools.call("post", {"title": f"{p['method']}: {outcome}",
                            "kind": "result", "cites": [p["trial_id"]], "tags": [p["method"]],
                            "body": f"{p['method']} with {json.dumps(p['params'])}: {verdict}."})
        tools.call("write_notebook", {"text": f"- {p['trial_id']} {p['method']} "
                                              f"{json.dumps(p['params'])} -> {shown}"})
        return True

    def _wrap_up(self, tools: Toolbox) -> bool:
        best = self.s["best"]
        tried = sorted({r["method"] for r in self.s["results"]})
        body = (f"Tried {', '.join(tried)}. "
                + (f"Best: {best['method']} {json.dumps(best['params'])}."
                   if best else "Nothing beat my first score."))
        tools.call("post", {"title": f"{self.agent_id}: summary", "body": body,
                            "kind": "insight", "tags": ["summary"],
                            "cites": [best["trial_id"]] if best else []})
        self.s["phase"] = "done"
        return False

    # ---- the search policy -------------------------------------------------------------------

    def _read_forum(self, tools: Toolbox) -> None:
        posts = _json(tools.call("read_forum", {"sort": "top", "limit": 10})) or []
        seen = []
        for post in posts:
            for c in post.get("cited", []):
                if c.get("public_pgr") is not None and c.get("method") in self.s["methods"]:
                    seen.append({"method": c["method"], "params": c["params"],
                                 "pgr": c["public_pgr"]})
        self.s["forum"] = seen

    def _choose(self) -> tuple[str, dict[str, Any]]:
        done = len(self.s["results"])
        horizon = max(1.0, 0.4 * (self.budget.trials_per_agent or 10))
        explore = max(0.15, 1.0 - done / horizon)
        known = [r for r in self.s["results"] + self.s["forum"] if r.get("pgr") is not None]
        if known and self.rng.random() > explore:
            best = max(known, key=lambda r: r["pgr"])
            return best["method"], self._perturb(best["method"], best["params"])
        names = sorted(self.s["methods"])
        tried = {n: sum(r["method"] == n for r in self.s["results"]) for n in names}
        w = np.array([self.s["prior"][n] / (1 + tried[n]) for n in names])
        name = names[self.rng.choice(len(names), p=w / w.sum())]
        return name, self._sample(name)

    def _sample(self, method: str) -> dict[str, Any]:
        out = {}
        for k, spec in self.s["methods"][method]["properties"].items():
            out[k] = self._draw(spec)
        return out

    def _draw(self, spec: dict[str, Any]) -> Any:
        if "enum" in spec:
            return spec["enum"][self.rng.integers(len(spec["enum"]))]
        if spec["type"] == "boolean":
            return bool(self.rng.integers(2))
        lo, hi = spec.get("minimum", 0), spec.get("maximum", 1)
        if spec["type"] == "integer":
            return int(self.rng.integers(lo, hi + 1))
        return round(float(self.rng.uniform(lo, hi)), 3)

    def _perturb(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for k, spec in self.s["methods"][method]["properties"].items():
            if k not in out:
                out[k] = spec["default"]
            if spec["type"] in ("number", "integer") and "enum" not in spec:
                lo, hi = spec.get("minimum", 0), spec.get("maximum", 1)
                v = out[k] + self.rng.normal(0, self.s["sigma"] * (hi - lo))
                v = min(hi, max(lo, v))
                out[k] = int(round(v)) if spec["type"] == "integer" else round(float(v), 3)
            elif self.rng.random() < self.s["sigma"]:
                out[k] = self._draw(spec)
        return out


def _json(result: ToolResult) -> Any:
    if result.is_error:
        return None
    try:
        return json.loads(result.content)
    except json.JSONDecodeError:
        return None
