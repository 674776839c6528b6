"""The transfer audit of a finished campaign, run on the trusted side only (`aar audit DIR`).

`audit` re-runs the private leaderboard's top-K distinct (method, params) configs, and the
vanilla baseline, on the held-out settings in `cfg.audit.settings` with the campaign's seeds,
and gives each (config, setting) a verdict by `VERDICT_RULE`. It reads the campaign through
`records` and runs everything in this process: held-out settings and their scores go to the
campaign's `audit.json` and the trusted feature/teacher cache, never to a place agents read.
Reproducing one trial is `rerun.py` (`aar rerun TRIAL_ID`). A campaign's own audit of its
confirmed configurations does not train here: it runs through the trial queue and per-setting
scorers (`lab/audit_stage.py`) and is judged by `results/verdict.py`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import ConfigError, FinetuneConfig, SettingConfig, StudentConfig, load_campaign
from aar_ray.results import records, stats
from aar_ray.results.verdict import acc_evidence, vanilla_mde_acc
from aar_ray.w2s.pgr import finite

VERDICTS = ("transfers", "does not transfer", "inconclusive", "no gap")
ALPHA = 0.05

VERDICT_RULE = """\
For each top-K config and each held-out setting, with the campaign's seeds and the whole test
split: PGR is the ratio of mean gains over seeds, [lo, hi] its 95% seeds x items CI
(`stats.pgr_ci`), in-lab PGR the same estimator on the campaign's private items, and "beats
vanilla" means ΔPGR vs the vanilla baseline re-run on that setting > 0 with a Holm-adjusted
p < 0.05 (`stats.paired_compare`; Holm over every config x setting test of the audit).
Rules, first match wins:
  no gap            the ceiling does not beat the teacher on this setting: pooled ceiling
                    acc <= pooled weak acc, or the gap is not distinguishable from 0 (the PGR
                    CI is unbounded). PGR says nothing here; methods are not run.
  transfers         lo > 0, and (beats vanilla, or lo <= in-lab PGR <= hi).
  does not transfer hi < in-lab PGR, and it does not beat vanilla.
  inconclusive      anything else (e.g. a CI that contains 0 and the in-lab PGR).
`code_changed` is true when the method's current code hash differs from the trial's recorded
one: the audit then measures today's code, not the code that earned the in-lab score."""


class AuditError(ConfigError):
    """The campaign directory cannot be audited or a trial cannot be reproduced; says why."""


def verdict(pgr: float | None, lo: float | None, hi: float | None, in_lab: float | None,
            delta_vs_vanilla: float | None, p_holm: float | None) -> str:
    """The verdict for one (config, held-out setting): `VERDICT_RULE`, first match wins.

    pgr, [lo, hi]: held-out PGR and its 95% CI (None: no PGR / an unbounded bound); in_lab:
    the config's in-lab PGR; delta_vs_vanilla and p_holm: the comparison with vanilla."""
    if pgr is None:
        return "no gap"
    beats = (delta_vs_vanilla is not None and delta_vs_vanilla > 0
             and p_holm is not None and p_holm < ALPHA)
    lo_ = -math.inf if lo is None else lo
    hi_ = math.inf if hi is None else hi
    matches = in_lab is not None and lo_ <= in_lab <= hi_
    if lo_ > 0 and (beats or matches):
        return "transfers"
    if in_lab is not None and hi_ < in_lab and not beats:
        return "does not transfer"
    return "inconclusive"


# ---- reading the campaign -----------------------------------------------------------------------

@dataclass
class Candidate:
    """One private-leaderboard entry, as the audit needs it."""

    trial_id: str
    agent: str
    method: str
    params: dict[str, Any]
    seeds: list[int]
    provenance: dict[str, Any]
    pgr: float | None  # its in-lab private PGR (w2s.pgr.pooled, as everywhere)


def private_board(campaign_dir: str | Path) -> list[Candidate]:
    """Submitted trials of every agent but 'baseline', best private PGR first."""
    out = [Candidate(r["trial_id"], r["agent"], r["method"], r["params"], r["seeds"],
                     r["provenance"], r["private"]["pgr"])
           for r in records.submissions(campaign_dir, required=True)
           if r["agent"] != "baseline" and r["private"].get("pgr") is not None]
    out.sort(key=lambda c: (-c.pgr, c.trial_id))
    return out


def top_configs(board: list[Candidate], k: int) -> list[Candidate]:
    """The best trial of each of the top `k` distinct (method, params) configs."""
    seen, out = set(), []
    for c in board:
        key = (c.method, json.dumps(c.params, sort_keys=True))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out[:k]


def code_changed(campaign_dir: str | Path, method: str, prov: dict[str, Any]) -> bool | None:
    """Whether `method`'s code differs from the hash its trial recorded (None: none was
    recorded). Built-ins are hashed with `w2s.methods.code_hash`; an agent's own method by its
    source in the campaign directory (it is re-run in the sandbox, as in its trial)."""
    from aar_ray.sandbox import custom_methods
    from aar_ray.w2s.methods import code_hash

    recorded = prov.get("code_hash")
    custom = custom_methods.parse_id(method)
    if custom:
        path = custom_methods.method_path(campaign_dir, *custom)
        if not path.exists():
            raise AuditError(f"method {method!r}: its source {path} is missing")
        current = custom_methods.code_hash(path.read_text())
    else:
        current = code_hash(method)
    return None if recorded is None else recorded != current


# ---- held-out settings --------------------------------------------------------------------------

@dataclass
class HeldOut:
    """One held-out setting's trusted artefacts for the audit's seeds: (seeds, n_test) 0/1."""

    cfg: SettingConfig
    seeds: list[int]
    student: StudentConfig
    finetune: FinetuneConfig
    setting: Any  # trial.Setting
    weak: np.ndarray
    ceiling: np.ndarray
    campaign: Any = None  # the audited campaign's config and directory (for agents' methods)
    campaign_dir: Path | None = None
    _inputs: dict[int, Any] = field(default_factory=dict)
    _vanilla: np.ndarray | None = None

    @classmethod
    def load(cls, sc: SettingConfig, seeds: list[int], student: StudentConfig,
             finetune: FinetuneConfig, cache_dir: Path | None) -> HeldOut:
        from aar_ray.w2s.trial import Setting, ceiling, teacher

        s = Setting.load(sc, cache_dir, finetune)
        labels = [s.data.labels[s.splits(seed).test] for seed in seeds]
        weak = np.stack([teacher(s, seed)["test"].argmax(1) == y
                         for seed, y in zip(seeds, labels, strict=True)])
        ceil = np.stack([ceiling(s, seed, student, finetune).argmax(1) == y
                         for seed, y in zip(seeds, labels, strict=True)])
        return cls(sc, seeds, student, finetune, s, weak, ceil)

    def gap_note(self) -> str | None:
        """Why PGR is undefined or unbounded here, or None when the setting has a gap."""
        w, c = float(self.weak.mean()), float(self.ceiling.mean())
        if c <= w:
            return f"ceiling acc {c:.3f} does not beat the teacher's {w:.3f}: PGR undefined"
        # every PGR here divides by the gap: with a gap not distinguishable from 0 (paired
        # test of ceiling vs teacher on the same items) it is unbounded
        if stats.paired_compare(self.ceiling, self.weak, self.weak, self.ceiling).p_value \
                >= ALPHA:
            return (f"ceiling acc {c:.3f} vs teacher {w:.3f}: the gap is not distinguishable "
                    "from 0, so PGR is unbounded")
        return None

    def correct(self, method: str, params: dict[str, Any]) -> np.ndarray:
        """(seeds, n_test) correctness of `method` run as in a trial (agents' methods in the
        sandbox), scored here."""
        from aar_ray.sandbox.custom_methods import run_any
        from aar_ray.w2s.trial import student_inputs

        for seed in self.seeds:
            if seed not in self._inputs:
                self._inputs[seed] = student_inputs(self.setting, seed, self.student.mode)
        preds = run_any(self.campaign, self.campaign_dir, method, params,
                        [self._inputs[s] for s in self.seeds])
        return np.stack([p.argmax(1) == self.setting.data.labels[self.setting.splits(s).test]
                         for s, p in zip(self.seeds, preds, strict=True)])

    def vanilla(self) -> np.ndarray:
        if self._vanilla is None:
            self._vanilla = self.correct("vanilla", {})
        return self._vanilla


# ---- the audit ----------------------------------------------------------------------------------

def audit(campaign_dir: str | Path, top_k: int | None = None, seeds: list[int] | None = None,
          *, cache_dir: str | Path | None = None, write: bool = True,
          configs: list[Candidate] | None = None) -> list[dict[str, Any]]:
    """Re-run the private board's top-K configs (or the given `configs`: the campaign's
    confirmed ones) and vanilla on every held-out setting; one row per (config, setting) with
    PGR, CI, in-lab PGR, Δ, p vs vanilla and the verdict (VERDICT_RULE). Writes `audit.json`
    into the campaign directory unless `write` is False."""
    t0 = time.time()
    campaign_dir = Path(campaign_dir)
    cfg = load_campaign(campaign_dir / "config.yaml")
    seeds = list(seeds or cfg.audit.seeds)
    margin = cfg.audit.margin
    k = top_k or cfg.audit.top_k
    cache = Path(cache_dir or cfg.cache_dir) if (cache_dir or cfg.cache_dir) else None
    if not cfg.audit.settings:
        raise AuditError(f"{campaign_dir}/config.yaml has no audit.settings to audit on")
    if configs is None:
        configs = top_configs(private_board(campaign_dir), k)
    changed = [code_changed(campaign_dir, c.method, c.provenance) for c in configs]
    rows: list[dict[str, Any]] = []
    for sc in cfg.audit.settings:
        held = HeldOut.load(sc, seeds, cfg.student, cfg.finetune, cache)
        held.campaign, held.campaign_dir = cfg, campaign_dir
        note = held.gap_note()
        for c, changed_c in zip(configs, changed, strict=True):
            row = {"trial_id": c.trial_id, "agent": c.agent, "method": c.method,
                   "params": c.params, "setting": sc.label, "seeds": seeds,
                   "weak_acc": float(held.weak.mean()), "ceiling_acc": float(held.ceiling.mean()),
                   "transfer_acc": None, "vanilla_acc": None, "pgr": None, "ci_lo": None,
                   "ci_hi": None, "vanilla_pgr": None, "in_lab_pgr": c.pgr,
                   "delta": None, "delta_vs_vanilla": None,
                   "p_vs_vanilla": None, "p_holm": None, "code_changed": changed_c,
                   "gap": float(held.ceiling.mean() - held.weak.mean()), "margin": margin,
                   "delta_acc": None, "ci_low_acc": None, "ci_high_acc": None,
                   "mde_acc": None, "note_gap": note or "",
                   "verdict": "no gap" if note else None, "note": note or ""}
            rows.append(row)
            if note:
                continue
            v = held.vanilla()
            t = v if (c.method, c.params) == ("vanilla", {}) else held.correct(c.method, c.params)
            est = stats.pgr_ci(t, held.weak, held.ceiling)
            van = stats.pgr_ci(v, held.weak, held.ceiling)
            cmp = stats.paired_compare(t, v, held.weak, held.ceiling)
            pgr = finite(est.mean)
            mde = vanilla_mde_acc(v, disagreement=cfg.confirm.disagreement, alpha=ALPHA,
                                  power=cfg.confirm.power)
            ev = acc_evidence(t, v, mde, alpha=ALPHA).to_dict()
            row.update({k: ev[k] for k in ("delta_acc", "ci_low_acc", "ci_high_acc", "mde_acc")})
            row.update(transfer_acc=float(t.mean()), vanilla_acc=float(v.mean()), pgr=pgr,
                       ci_lo=finite(est.lo), ci_hi=finite(est.hi), vanilla_pgr=finite(van.mean),
                       delta=None if pgr is None or c.pgr is None else pgr - c.pgr,
                       delta_vs_vanilla=finite(cmp.delta_pgr), p_vs_vanilla=finite(cmp.p_value))
            if changed_c:
                row["note"] = "method code changed since the trial: today's code was audited"
    tested = [r for r in rows if r["p_vs_vanilla"] is not None]
    for r, p in zip(tested, stats.holm([r["p_vs_vanilla"] for r in tested]), strict=True):
        r["p_holm"] = finite(p)
    for r in rows:
        if r["verdict"] is None:
            r["verdict"] = verdict(r["pgr"], r["ci_lo"], r["ci_hi"], r["in_lab_pgr"],
                                   r["delta_vs_vanilla"], r["p_holm"])
    if write:
        report = {"campaign_dir": str(campaign_dir.resolve()), "created_at": time.time(),
                  "seconds": round(time.time() - t0, 1), "seeds": seeds, "top_k": k,
                  "settings": [s.label for s in cfg.audit.settings], "rule": VERDICT_RULE,
                  "rows": rows}
        (campaign_dir / "audit.json").write_text(json.dumps(report, indent=2))
    return rows
