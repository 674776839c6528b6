"""Two finished campaigns side by side (`aar compare DIR_A DIR_B`), typically the lab's agents
against a sweep at the same trial budget: the best confirmed ΔPGR over vanilla with its CI, the
exploration trials it took to first try that configuration, the public→private rank
correlation of the exploration, and what was explored. Read-only: each campaign's
`summary.json` (written by its end stage) and its trial queue's records.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aar_ray.config import load_campaign
from aar_ray.results import records
from aar_ray.results.records import RecordsError


def _key(method: str, params: dict[str, Any]) -> str:
    return json.dumps([method, params], sort_keys=True)


def campaign_facts(campaign_dir: str | Path) -> dict[str, Any]:
    """What the comparison reads from one campaign directory."""
    d = Path(campaign_dir)
    path = d / "summary.json"
    if not path.exists():
        raise RecordsError(f"{d}: no summary.json (not a finished campaign?)")
    summary = json.loads(path.read_text())
    cfg = load_campaign(d / "config.yaml")
    explored = [t for t in records.queued_trials(d) if t["kind"] == "agent"]
    order = {}
    for i, t in enumerate(explored, 1):  # the first time each configuration was tried
        order.setdefault(_key(t["method"], t["params"]), i)
    best = max(summary.get("confirmed") or [], key=lambda c: c["delta"], default=None)
    return {
        "campaign": d.name,
        "explorer": cfg.sweep_agent if cfg.explorer == "sweep" else f"{cfg.agents} agents",
        "trials": len(explored),
        "failed": sum(t["status"] == "error" for t in explored),
        "best": best,
        "trials_to_best": order.get(_key(best["method"], best["params"])) if best else None,
        "spearman": summary.get("public_private_spearman"),
        "max_method_share": summary.get("max_method_share"),
        "min_detectable_delta": summary.get("min_detectable_delta"),
        "methods": sorted({t["method"] for t in explored}),
        "configs": len(order),
        "verdict": summary.get("verdict"),
    }


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _best(f: dict[str, Any]) -> str:
    b = f["best"]
    if b is None:
        return "none confirmed"
    return (f"{b['delta']:+.3f} [{b['ci_low']:+.3f}, {b['ci_high']:+.3f}] "
            f"({b['method']})")


ROWS = [  # (label, how to show it)
    ("explorer", lambda f: f["explorer"]),
    ("exploration trials (failed)", lambda f: f"{f['trials']} ({f['failed']})"),
    ("best confirmed ΔPGR [95% CI]", _best),
    ("trials to first try it", lambda f: _num(f["trials_to_best"], "{}")),
    ("public→private Spearman", lambda f: _num(f["spearman"], "{:.2f}")),
    ("largest method share", lambda f: _num(f["max_method_share"], "{:.2f}")),
    ("min detectable ΔPGR", lambda f: _num(f["min_detectable_delta"])),
    ("distinct configurations", lambda f: str(f["configs"])),
    ("methods explored", lambda f: f"{len(f['methods'])}: {', '.join(f['methods'])}"),
]


def format_compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A two-column table, then each campaign's own verdict."""
    width = max(len(label) for label, _ in ROWS)
    cells = [(label, show(a), show(b)) for label, show in ROWS]
    col = min(48, max(len(x) for x in [a["campaign"]] + [c[1] for c in cells]))
    lines = [f"{'':<{width}}  {a['campaign']:<{col}}  {b['campaign']}"]
    lines += [f"{label:<{width}}  {x:<{col}}  {y}" for label, x, y in cells]
    lines += [f"verdict {f['campaign']}: {f['verdict'] or '-'}" for f in (a, b)]
    if a["trials"] != b["trials"]:
        lines.append(f"note: unequal budgets ({a['trials']} vs {b['trials']} trials)")
    return "\n".join(lines)
