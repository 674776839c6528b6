"""How different the agents' work was: methods and parameter regions per agent, and overlap
between agents (the seed's lesson: diversity is what made the team work)."""
from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any


def region(method: str, params: dict[str, Any], schema: dict[str, Any] | None) -> str:
    """A coarse cell of parameter space: each numeric parameter in thirds of its range
    (`schema`: the method's parameter schema; None for a method not in the catalog)."""
    if schema is None:
        return method
    parts = []
    for k, spec in sorted(schema["properties"].items()):
        v = params.get(k, spec["default"])
        if spec["type"] in ("number", "integer") and "minimum" in spec and "maximum" in spec:
            span = (spec["maximum"] - spec["minimum"]) or 1
            v = ("low", "mid", "high")[min(2, int(3 * (v - spec["minimum"]) / span))]
        parts.append(f"{k}={v}")
    return f"{method}({', '.join(parts)})"


def diversity(trials: list[dict[str, Any]],
              catalog: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """From the queue's trial list (agent, method, params) and the method catalog
    (`w2s.methods.catalog`, as the trial queue serves it: the lab's driver needs no torch):
    per-agent and team diversity."""
    per_agent: dict[str, dict[str, set[str]]] = {}
    for t in trials:
        a = per_agent.setdefault(t["agent"], {"methods": set(), "regions": set()})
        a["methods"].add(t["method"])
        schema = catalog[t["method"]]["params"] if t["method"] in catalog else None
        a["regions"].add(region(t["method"], t["params"], schema))
    overlaps = [len(x["methods"] & y["methods"]) / len(x["methods"] | y["methods"])
                for x, y in combinations(per_agent.values(), 2)]
    return {
        "agents": {a: {"methods": sorted(v["methods"]), "n_methods": len(v["methods"]),
                       "n_regions": len(v["regions"])} for a, v in sorted(per_agent.items())},
        "team_methods": len(set().union(*[v["methods"] for v in per_agent.values()]))
        if per_agent else 0,
        "team_regions": len(set().union(*[v["regions"] for v in per_agent.values()]))
        if per_agent else 0,
        "mean_method_overlap": sum(overlaps) / len(overlaps) if overlaps else None,
    }
