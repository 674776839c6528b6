"""Leaderboard uncertainty, the transfer audit and trial reproduction.

The audit tests build a tiny campaign directory without Ray: a Scorer, trials recorded from
`run_method` as the trial queue would, `save_campaign` for config.yaml.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from aar_ray.cli import audit_table
from aar_ray.config import (
    AuditConfig,
    CampaignConfig,
    SettingConfig,
    load_campaign,
    save_campaign,
)
from aar_ray.lab.scorer import Scorer
from aar_ray.lab.trials import provenance
from aar_ray.results import audit as audit_mod
from aar_ray.results.audit import AuditError, audit, verdict
from aar_ray.results.leaderboard import annotate, annotate_leaderboard
from aar_ray.results.rerun import rerun
from aar_ray.w2s.trial import run_method

# ---- annotate on synthetic correctness ----------------------------------------------------------


def _draw(rng, z, acc):
    """(S, N) correctness, P(correct) = acc[s]; items share difficulty z (paired like real
    models: the same items are hard for everyone)."""
    latent = np.where(rng.random((len(acc), len(z))) < 0.8, z, rng.random((len(acc), len(z))))
    return latent < np.asarray(acc)[:, None]


def _per_seed(a, seeds):
    return {s: a[i] for i, s in enumerate(seeds)}


def test_annotate_finds_a_real_effect_and_not_a_null_one():
    rng = np.random.default_rng(1)
    seeds, n = [0, 1, 2, 3, 4], 2000
    z = rng.random(n)
    sd = rng.normal(0, 0.005, len(seeds))
    arr = {"weak": _draw(rng, z, 0.70 + sd), "ceil": _draw(rng, z, 0.90 + sd),
           "base": _draw(rng, z, 0.78 + sd), "good": _draw(rng, z, 0.83 + sd),
           "null": _draw(rng, z, 0.78 + sd), "null2": _draw(rng, z, 0.78 + sd)}
    correct = {k: _per_seed(arr[k], seeds) for k in ("base", "good", "null", "null2")}
    # a trial on a subset of seeds is compared with the baseline on those seeds only
    correct["short"] = {s: arr["good"][s] for s in (0, 2, 4)}
    entries = [{"trial_id": t, "agent": "baseline" if t == "base" else "a"}
               for t in ("good", "null", "base", "null2", "short")]
    out = annotate(entries, correct, _per_seed(arr["weak"], seeds), _per_seed(arr["ceil"], seeds),
                   "base", np.random.default_rng(0))
    by = {e["trial_id"]: e for e in out}
    assert out is entries
    for e in out:
        assert e["ci_lo"] <= e["pgr_pooled"] <= e["ci_hi"]
    assert by["good"]["delta_vs_baseline"] == pytest.approx(0.25, abs=0.08)  # +5pt / 20pt gap
    assert by["good"]["significant"] and by["good"]["p_holm"] < 0.05
    assert by["good"]["p_holm"] >= by["good"]["p_vs_baseline"]
    assert by["good"]["effect_size"] > 1
    for t in ("null", "null2"):
        assert not by[t]["significant"] and by[t]["p_holm"] > 0.05
    assert by["short"]["compared_seeds"] == [0, 2, 4]
    assert by["good"]["compared_seeds"] == seeds
    assert by["base"]["p_holm"] is None and by["base"]["significant"] is False
    # no baseline: CIs but no comparisons; everything JSON-safe
    bare = annotate([{"trial_id": "good"}], correct, _per_seed(arr["weak"], seeds),
                    _per_seed(arr["ceil"], seeds), None, np.random.default_rng(0))
    assert bare[0]["p_vs_baseline"] is None and bare[0]["ci_lo"] is not None
    json.loads(json.dumps(out, allow_nan=False, default=int))


def test_annotate_no_gap_gives_none_not_nan():
    rng = np.random.default_rng(2)
    w = rng.random((3, 200)) < 0.7
    entries = annotate([{"trial_id": "x"}, {"trial_id": "b"}], {"x": _per_seed(w, [0, 1, 2]),
                       "b": _per_seed(w, [0, 1, 2])}, _per_seed(w, [0, 1, 2]),
                       _per_seed(w, [0, 1, 2]), "b", rng)
    assert entries[0]["pgr_pooled"] is None and entries[0]["ci_lo"] is None
    assert entries[0]["significant"] is False


def test_verdict_rule():
    assert verdict(None, None, None, 0.3, None, None) == "no gap"
    assert verdict(0.3, 0.1, 0.5, 0.35, 0.0, 1.0) == "transfers"  # CI holds in-lab PGR
    assert verdict(0.3, 0.1, 0.5, 0.9, 0.2, 0.01) == "transfers"  # beats vanilla
    assert verdict(0.3, 0.1, 0.5, 0.9, 0.0, 0.5) == "does not transfer"
    assert verdict(0.3, -0.1, 0.5, 0.9, 0.0, 0.5) == "does not transfer"
    assert verdict(0.3, -0.1, 0.5, 0.4, 0.0, 0.5) == "inconclusive"  # CI contains 0
    assert verdict(0.3, None, None, 0.4, 0.0, 0.5) == "inconclusive"  # unbounded CI
    assert verdict(0.3, -0.2, 0.5, 0.9, -0.2, 0.001) == "does not transfer"  # worse than van.


# ---- a tiny campaign directory ------------------------------------------------------------------

HELD_OUT = [
    # the 1-layer encoder cannot learn the composition from ~200 examples: no gap (measured)
    SettingConfig(task="compositional", weak="glove50", strong="minilm_l1", max_examples=600,
                  test_size=150),
    # ~9 points between teacher and ceiling (measured)
    SettingConfig(task="tweets", weak="minilm_l1", strong="minilm", max_examples=600,
                  test_size=150),
]


@pytest.fixture(scope="module")
def campaign(small_setting, fast_student, cache_dir, tmp_path_factory):
    """config.yaml + scorer.sqlite with a baseline and three agents' submitted trials."""
    cfg = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0, 1],
                         cache_dir=cache_dir, audit=AuditConfig(settings=HELD_OUT, top_k=2))
    cfg.validate()
    d = tmp_path_factory.mktemp("campaign")
    save_campaign(cfg, d / "config.yaml")
    scorer = Scorer(str(d), cfg)
    scorer.prepare()
    trials = [("tb", "baseline", "vanilla", {}), ("t1", "a", "aux_confidence", {}),
              ("t2", "b", "confidence_filter", {"keep": 0.6}),
              ("t3", "c", "label_smoothing", {"epsilon": 0.2})]
    for tid, agent, method, params in trials:
        preds = {seed: run_method(method, params, scorer.student_inputs(seed), cfg.student)
                 for seed in cfg.seeds}
        prov = provenance(cfg, method)
        if tid == "t2":
            prov["code_hash"] = "0" * 16  # as if the method was edited after the trial
        scorer.record(tid, agent, method, params, cfg.seeds, prov, preds)
        scorer.submit(tid, agent)
    board = scorer.leaderboard("private", 100)
    scorer.store.db.close()
    return d, board


def test_annotate_leaderboard_from_a_scorer(campaign):
    d, _ = campaign
    scorer = Scorer(str(d), load_campaign(d / "config.yaml"))
    try:
        board = annotate_leaderboard(scorer, scorer.leaderboard("private", 100))
    finally:
        scorer.store.db.close()
    base = next(e for e in board if e["agent"] == "baseline")
    others = [e for e in board if e["agent"] != "baseline"]
    assert base["p_holm"] is None and all(e["p_holm"] is not None for e in others)
    for e in board:
        assert e["ci_lo"] <= e["pgr_pooled"] <= e["ci_hi"]
    assert all(0 <= e["p_vs_baseline"] <= e["p_holm"] <= 1 for e in others)


@pytest.mark.slow
def test_audit_rows_verdicts_and_json(campaign):
    d, board = campaign
    rows = audit(d)
    top2 = [e for e in board if e["agent"] != "baseline"][:2]
    assert [r["trial_id"] for r in rows] == [e["trial_id"] for e in top2] * 2
    assert {r["setting"] for r in rows} == {s.label for s in HELD_OUT}
    for r in rows:
        assert r["verdict"] in audit_mod.VERDICTS
        assert r["in_lab_board_pgr"] == pytest.approx(
            next(e["pgr"] for e in board if e["trial_id"] == r["trial_id"]))
        assert r["code_changed"] is (r["trial_id"] == "t2")
    gap = [r for r in rows if r["setting"] == HELD_OUT[1].label]
    nogap = [r for r in rows if r["setting"] == HELD_OUT[0].label]
    assert all(r["verdict"] == "no gap" and r["pgr"] is None and r["note"] for r in nogap)
    for r in gap:
        assert r["verdict"] != "no gap"
        assert r["ci_lo"] <= r["pgr"] <= r["ci_hi"]
        assert r["delta"] == pytest.approx(r["pgr"] - r["in_lab_pgr"])
        assert 0 <= r["p_vs_vanilla"] <= r["p_holm"] <= 1
        assert r["verdict"] == verdict(r["pgr"], r["ci_lo"], r["ci_hi"], r["in_lab_pgr"],
                                       r["delta_vs_vanilla"], r["p_holm"])
    saved = json.loads((d / "audit.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert "transfers" in saved["rule"] and saved["seeds"] == [0, 1]
    table = audit_table(rows)
    assert table.count("\n|") == len(rows) + 1 and "no gap" in table


@pytest.mark.slow
def test_rerun_reproduces_a_trial_within_its_ci(campaign):
    d, board = campaign
    out = rerun(d, "t1")
    assert out["within_ci"] and out["code_changed"] is False
    assert out["rerun_pgr"] == pytest.approx(out["original_pgr"], abs=0.1)
    assert out["original_board_pgr"] == pytest.approx(out["recorded_board_pgr"])
    assert out["prediction_agreement"] > 0.9
    assert out["version_diff"] == {} and out["student_matches_config"]
    assert rerun(d, "t2")["code_changed"] is True
    with pytest.raises(AuditError, match="no recorded trial"):
        rerun(d, "nope")


def test_agents_own_method_is_audited_from_its_source_in_the_sandbox(
        tmp_path, small_setting, fast_student, cache_dir):
    from aar_ray.config import CampaignConfig
    from aar_ray.sandbox import custom_methods
    from aar_ray.w2s.trial import Setting, student_inputs

    source = custom_methods.TEMPLATE
    info = custom_methods.save(tmp_path, "a", "mine", source, builtin=set())
    prov = {"code_hash": info["code_hash"]}
    assert audit_mod.code_changed(tmp_path, "custom:a/mine", prov) is False
    assert audit_mod.code_changed(tmp_path, "custom:a/mine", {}) is None  # nothing recorded
    custom_methods.method_path(tmp_path, "a", "mine").write_text(source + "\n# edited\n")
    assert audit_mod.code_changed(tmp_path, "custom:a/mine", prov) is True
    with pytest.raises(AuditError, match="missing"):
        audit_mod.code_changed(tmp_path, "custom:a/gone", prov)
    cfg = CampaignConfig(setting=small_setting, student=fast_student, cache_dir=cache_dir,
                         root=str(tmp_path / "runs"))
    inputs = [student_inputs(Setting.load(small_setting, cache_dir), 0)]
    preds = custom_methods.run_any(cfg, tmp_path, "custom:a/mine", {"keep": 0.3}, inputs)
    assert preds[0].shape == (len(inputs[0].x_test), 2)
