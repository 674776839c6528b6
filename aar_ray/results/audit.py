"""Transfer audit and reproduction of a finished campaign, run on the trusted side only.

`audit` re-runs the private leaderboard's top-K distinct (method, params) configs, and the
vanilla baseline, on the held-out settings in `cfg.audit.settings` with the campaign's seeds,
and asks whether each method's PGR holds up there (`verdict`; `VERDICT_RULE` is the rule as
README text). `rerun` reproduces one recorded trial from its provenance and checks it against
the original's CI. Both read only the campaign directory and run everything in this process:
held-out settings and their scores go to the campaign's `audit.json` and the trusted
feature/teacher cache, never to a place agents read.

    python -m aar_ray.results.audit CAMPAIGN_DIR [--top-k K] [--seeds 0 1 2] [--rerun TRIAL_ID]
"""
from __future__ import annotations

import json
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import (
    CampaignConfig,
    ConfigError,
    FinetuneConfig,
    SettingConfig,
    StudentConfig,
    load_campaign,
)
from aar_ray.lab.store import read_only
from aar_ray.results import stats

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
    """The verdict for one (config, held-out setting) that has a gap (else: "no gap").

    pgr, [lo, hi]: held-out PGR and its 95% CI (None bound = unbounded); in_lab: the config's
    private in-lab PGR (same estimator); beats = delta_vs_vanilla > 0 and p_holm < 0.05.
    First match wins:
      "no gap"            pgr is None (the caller checks the gap first; see VERDICT_RULE)
      "transfers"         lo > 0 and (beats or lo <= in_lab <= hi)
      "does not transfer" hi < in_lab and not beats
      "inconclusive"      otherwise
    """
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
    board_pgr: float  # the leaderboard's number: mean of per-seed PGRs
    pooled_pgr: float | None  # ratio of mean gains (the estimator the audit's CIs use)


def _pooled(per_seed: list[dict[str, Any]]) -> float | None:
    num = sum(r["transfer_acc"] - r["weak_acc"] for r in per_seed)
    den = sum(r["ceiling_acc"] - r["weak_acc"] for r in per_seed)
    return num / den if den > 0 else None


def _connect(campaign_dir: Path) -> sqlite3.Connection:
    path = campaign_dir / "scorer.sqlite"
    if not path.exists():
        raise AuditError(f"{campaign_dir}: no scorer.sqlite (not a campaign directory?)")
    return read_only(path)


def private_board(campaign_dir: str | Path) -> list[Candidate]:
    """Submitted trials of every agent but 'baseline', best private PGR first."""
    db = _connect(Path(campaign_dir))
    try:
        rows = db.execute(
            "SELECT s.trial_id, s.agent, s.private, t.method, t.params, t.seeds, t.provenance "
            "FROM submissions s JOIN trials t USING (trial_id) WHERE s.agent != 'baseline'"
        ).fetchall()
    finally:
        db.close()
    out = []
    for r in rows:
        private = json.loads(r["private"])
        if private.get("pgr") is None:
            continue
        out.append(Candidate(r["trial_id"], r["agent"], r["method"], json.loads(r["params"]),
                             json.loads(r["seeds"]), json.loads(r["provenance"] or "{}"),
                             private["pgr"], _pooled(private["per_seed"])))
    out.sort(key=lambda c: (-c.board_pgr, c.trial_id))
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


def resolve_method(campaign_dir: str | Path, method: str,
                   prov: dict[str, Any]) -> tuple[str, bool | None]:
    """The trial's method and whether its code changed since the trial (None: no hash was
    recorded). Built-ins are hashed with `trials.method_code_hash`; an agent's own method by
    its source in the campaign directory, and it is re-run in the sandbox (`run_any`)."""
    from aar_ray.lab.trials import method_code_hash
    from aar_ray.sandbox import custom_methods

    recorded = prov.get("code_hash")
    custom = custom_methods.parse_id(method)
    if custom:  # an agent's own method: re-run in the sandbox, as in its trial
        path = custom_methods.method_path(campaign_dir, *custom)
        if not path.exists():
            raise AuditError(f"method {method!r}: its source {path} is missing")
        current = custom_methods.code_hash(path.read_text())
    else:
        current = method_code_hash(method)
    return method, (None if recorded is None else recorded != current)


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

        s = Setting.load(sc, cache_dir)
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
        # the ceiling's own PGR is 1; its CI is unbounded exactly when pgr_ci finds the
        # pooled gap indistinguishable from 0, the case where every PGR here is unbounded
        est = stats.pgr_ci(self.ceiling, self.weak, self.ceiling, n_boot=500,
                           rng=np.random.default_rng(0))
        if not math.isfinite(est.lo):
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


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


# ---- the audit ----------------------------------------------------------------------------------

def audit(campaign_dir: str | Path, top_k: int | None = None, seeds: list[int] | None = None,
          *, cache_dir: str | Path | None = None, write: bool = True) -> list[dict[str, Any]]:
    """Re-run the private board's top-K configs and vanilla on every held-out setting; one row
    per (config, setting) with PGR, CI, in-lab PGR, Δ, p vs vanilla and the verdict
    (VERDICT_RULE). Writes `audit.json` into the campaign directory unless `write` is False."""
    t0 = time.time()
    campaign_dir = Path(campaign_dir)
    cfg = load_campaign(campaign_dir / "config.yaml")
    seeds = list(seeds or cfg.seeds)
    k = top_k or cfg.audit.top_k
    cache = Path(cache_dir or cfg.cache_dir) if (cache_dir or cfg.cache_dir) else None
    if not cfg.audit.settings:
        raise AuditError(f"{campaign_dir}/config.yaml has no audit.settings to audit on")
    configs = top_configs(private_board(campaign_dir), k)
    resolved = [resolve_method(campaign_dir, c.method, c.provenance) for c in configs]
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for sc in cfg.audit.settings:
        held = HeldOut.load(sc, seeds, cfg.student, cfg.finetune, cache)
        held.campaign, held.campaign_dir = cfg, campaign_dir
        note = held.gap_note()
        for c, (name, changed) in zip(configs, resolved, strict=True):
            row = {"trial_id": c.trial_id, "agent": c.agent, "method": c.method,
                   "params": c.params, "setting": sc.label, "seeds": seeds,
                   "weak_acc": float(held.weak.mean()), "ceiling_acc": float(held.ceiling.mean()),
                   "transfer_acc": None, "vanilla_acc": None, "pgr": None, "ci_lo": None,
                   "ci_hi": None, "vanilla_pgr": None, "in_lab_pgr": c.pooled_pgr,
                   "in_lab_board_pgr": c.board_pgr, "delta": None, "delta_vs_vanilla": None,
                   "p_vs_vanilla": None, "p_holm": None, "code_changed": changed,
                   "verdict": "no gap" if note else None, "note": note or ""}
            rows.append(row)
            if note:
                continue
            v = held.vanilla()
            t = v if (name, c.params) == ("vanilla", {}) else held.correct(name, c.params)
            est = stats.pgr_ci(t, held.weak, held.ceiling, rng=rng)
            van = stats.pgr_ci(v, held.weak, held.ceiling, rng=rng)
            cmp = stats.paired_compare(t, v, held.weak, held.ceiling, rng=rng)
            pgr = _num(est.mean)
            row.update(transfer_acc=float(t.mean()), vanilla_acc=float(v.mean()), pgr=pgr,
                       ci_lo=_num(est.lo), ci_hi=_num(est.hi), vanilla_pgr=_num(van.mean),
                       delta=None if pgr is None or c.pooled_pgr is None
                       else pgr - c.pooled_pgr,
                       delta_vs_vanilla=_num(cmp.delta_pgr), p_vs_vanilla=_num(cmp.p_value))
            if changed:
                row["note"] = "method code changed since the trial: today's code was audited"
    tested = [r for r in rows if r["p_vs_vanilla"] is not None]
    for r, p in zip(tested, stats.holm([r["p_vs_vanilla"] for r in tested]), strict=True):
        r["p_holm"] = _num(p)
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


def _f(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def format_audit(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `audit` rows, notes below it."""
    out = ["| method | params | setting | PGR [95% CI] | vanilla PGR | in-lab PGR | Δ (held-out"
           " − in-lab) | ΔPGR vs vanilla | p (Holm) | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        ci = f"{_f(r['pgr'])} [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}]" if r["pgr"] is not None \
            else "–"
        p = "–" if r["p_vs_vanilla"] is None else f"{r['p_vs_vanilla']:.3g} ({r['p_holm']:.3g})"
        flag = " ⚠" if r["code_changed"] else ""
        out.append(f"| {r['method']}{flag} | {json.dumps(r['params'])} | {r['setting']} | {ci} | "
                   f"{_f(r['vanilla_pgr'])} | {_f(r['in_lab_pgr'])} | {_f(r['delta'], '+.3f')} | "
                   f"{_f(r['delta_vs_vanilla'], '+.3f')} | {p} | {r['verdict']} |")
        if r["note"]:
            notes.append(f"- {r['method']} on {r['setting']}: {r['note']}")
    return "\n".join(out + ([""] + sorted(set(notes)) if notes else []))


# ---- reproduction -------------------------------------------------------------------------------

def _trial_row(campaign_dir: Path, trial_id: str) -> dict[str, Any]:
    db = _connect(campaign_dir)
    try:
        row = db.execute("SELECT t.*, s.private FROM trials t LEFT JOIN submissions s "
                         "USING (trial_id) WHERE t.trial_id=?", (trial_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise AuditError(f"{campaign_dir}: no recorded trial {trial_id!r}")
    return dict(row)


def version_diff(recorded: dict[str, str | None]) -> dict[str, dict[str, str | None]]:
    """{package: {recorded, current}} for every recorded package whose version changed."""
    out = {}
    for pkg, was in recorded.items():
        try:
            now = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            now = None
        if now != was:
            out[pkg] = {"recorded": was, "current": now}
    return out


def rerun(campaign_dir: str | Path, trial_id: str, *,
          cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Reproduce a trial from its provenance in this process and score it on the campaign's
    own private items (a fresh Scorer on a temp directory draws the same public/private
    partition). `within_ci`: the rerun's private PGR lies in the original's 95% CI."""
    from aar_ray.lab.scorer import Scorer, _unpack
    from aar_ray.results.leaderboard import correctness, reference_correctness
    from aar_ray.sandbox.custom_methods import run_any

    campaign_dir = Path(campaign_dir)
    cfg: CampaignConfig = load_campaign(campaign_dir / "config.yaml")
    if cache_dir:
        cfg.cache_dir = str(cache_dir)
    row = _trial_row(campaign_dir, trial_id)
    prov = json.loads(row["provenance"] or "{}")
    for key in ("task", "weak", "strong"):
        if prov.get(key) not in (None, getattr(cfg.setting, key)):
            raise AuditError(f"trial {trial_id} ran on {key}={prov[key]!r} but config.yaml "
                             f"says {getattr(cfg.setting, key)!r}")
    student = StudentConfig(**prov["student"]) if prov.get("student") else cfg.student
    method, params, seeds = row["method"], json.loads(row["params"]), json.loads(row["seeds"])
    name, changed = resolve_method(campaign_dir, method, prov)
    original = _unpack(row["preds"])
    with tempfile.TemporaryDirectory() as tmp:
        scorer = Scorer(tmp, cfg)
        try:
            cfg.student = student
            new = dict(zip(seeds, run_any(cfg, campaign_dir, name, params,
                                          [scorer.student_inputs(s) for s in seeds]),
                           strict=True))
            scorer.record("original", "audit", method, params, seeds, prov, original)
            scorer.record("rerun", "audit", method, params, seeds, prov, new)
            weak, ceil = reference_correctness(scorer, "private", seeds)
            arrays = {tid: np.stack([correctness(scorer, tid)[s] for s in seeds])
                      for tid in ("original", "rerun")}
            w, c = (np.stack([x[s] for s in seeds]) for x in (weak, ceil))
            rng = np.random.default_rng(0)
            o = stats.pgr_ci(arrays["original"], w, c, rng=rng)
            r = stats.pgr_ci(arrays["rerun"], w, c, rng=rng)
            board = {k: scorer.score(p, "private")["pgr"] for k, p in
                     (("original", original), ("rerun", new))}
        finally:
            scorer.store.db.close()
    recorded = json.loads(row["private"])["pgr"] if row.get("private") else None
    agree = float(np.mean([(original[s].argmax(1) == new[s].argmax(1)).mean() for s in seeds]))
    return {
        "trial_id": trial_id, "method": method, "params": params, "seeds": seeds,
        "original_pgr": _num(o.mean), "original_ci": [_num(o.lo), _num(o.hi)],
        "rerun_pgr": _num(r.mean), "rerun_ci": [_num(r.lo), _num(r.hi)],
        "original_board_pgr": board["original"], "rerun_board_pgr": board["rerun"],
        "recorded_board_pgr": recorded,
        "within_ci": bool(math.isfinite(r.mean) and o.lo <= r.mean <= o.hi),
        "prediction_agreement": agree,
        "max_abs_prob_diff": float(max(np.abs(original[s] - new[s]).max() for s in seeds)),
        "code_changed": changed, "student_matches_config": student == cfg.student,
        "version_diff": version_diff(prov.get("versions", {})),
    }
