"""The confirmation stage's statistics, by simulation (no models, no Ray): whole simulated
campaigns — noisy exploration picks the top K of many configurations by public ΔPGR, then the
pre-registered K are re-run on fresh seeds and judged by `confirmation.decide`, the code the
lab runs. Family-wise error is held when nothing beats vanilla; a real +0.08 is found."""
from __future__ import annotations

import numpy as np
import pytest

from aar_ray.config import CampaignConfig, ConfirmConfig
from aar_ray.lab import confirmation
from aar_ray.lab.truth import compare, estimate

WEAK, CEIL = 0.75, 0.87  # accuracies: a gap of 0.12, as on the embedded testbed
VANILLA = WEAK + 0.35 * (CEIL - WEAK)
DISAGREE = 0.08  # share of items where a method's answer differs from vanilla's
TRAIN_SD = 0.004  # seed-to-seed (training) noise of a method's accuracy


def _seed_arrays(rng, n: int, deltas: list[float]) -> tuple[np.ndarray, ...]:
    """One seed's private items: weak, ceiling, vanilla and one array per method whose
    accuracy is vanilla's + delta (+ training noise), each differing from vanilla on
    DISAGREE of the items."""
    weak = rng.random(n) < WEAK
    ceil = rng.random(n) < CEIL
    van = rng.random(n) < VANILLA
    methods = []
    for d in deltas:
        flip = rng.random(n) < DISAGREE
        # on redrawn items the method is right with the probability that moves its accuracy
        # by d (+ training noise): (1 - D) V + D p = V + shift
        shift = d + rng.normal(0, TRAIN_SD)
        right = rng.random(n) < np.clip(VANILLA + shift / DISAGREE, 0, 1)
        methods.append(np.where(flip, right, van))
    return (weak, ceil, van, *methods)


def simulate(rng, true_delta_pgr: list[float], *, k: int = 3, explore_seeds: int = 3,
             public_items: int = 3000, fresh_seeds: int = 20, private_items: int = 3000):
    """One campaign: exploration scores every configuration on `explore_seeds` seeds of
    public items; the top k by public ΔPGR are confirmed on `fresh_seeds` new seeds."""
    deltas = [d * (CEIL - WEAK) for d in true_delta_pgr]
    seeds = [_seed_arrays(rng, public_items, deltas) for _ in range(explore_seeds)]
    weak, ceil, van = ([s[i] for s in seeds] for i in range(3))
    explored = [{"method": f"m{j}", "params": {}, "trials": [f"t{j}"], "agents": ["a"],
                 "flags": [],
                 "public_delta": compare([s[3 + j] for s in seeds], van, weak, ceil)["delta"]}
                for j in range(len(deltas))]
    cfg = CampaignConfig(confirm=ConfirmConfig(top_k=k, seeds=list(range(100, 100 + fresh_seeds)),
                                               disagreement=DISAGREE))
    design = {"items": [private_items], "gap": CEIL - WEAK,
              "vanilla_acc": [float(v.mean()) for v in van],
              "vanilla_items": [public_items] * len(van)}
    plan = {"alpha": 0.05, "candidates": confirmation.choose(explored, k),
            "design": confirmation.power_design(design, cfg)}
    picked = [int(c["method"][1:]) for c in plan["candidates"]]
    fresh = [_seed_arrays(rng, private_items, [deltas[j] for j in picked])
             for _ in range(fresh_seeds)]
    weak, ceil, van = ([s[i] for s in fresh] for i in range(3))
    results = {c["name"]: {"trial_id": c["name"],
                           "estimate": estimate([s[3 + i] for s in fresh], weak, ceil),
                           "vs_vanilla": compare([s[3 + i] for s in fresh], van, weak, ceil)}
               for i, c in enumerate(plan["candidates"])}
    return confirmation.decide(results, plan), picked


def test_null_campaigns_confirm_nothing_beyond_alpha() -> None:
    """Every configuration equals vanilla: the stage confirms something in <= 5% of runs
    (the observed rate plus its binomial slack must stay under 0.05 + 2 SE)."""
    rng = np.random.default_rng(1)
    runs = 300
    false = sum(bool(simulate(rng, [0.0] * 30)[0].confirmed) for _ in range(runs))
    assert false / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs), false


def test_a_real_improvement_is_confirmed_with_power() -> None:
    """One of 30 configurations is truly +0.08 ΔPGR better: confirmed in >= 80% of runs,
    and what is confirmed is that one (never a null one in more than 5% of runs)."""
    rng = np.random.default_rng(2)
    runs, hits, wrong = 150, 0, 0
    for _ in range(runs):
        decision, picked = simulate(rng, [0.08] + [0.0] * 29)
        names = {c["method"] for c in decision.confirmed}
        hits += "m0" in names
        wrong += bool(names - {"m0"})
    assert hits / runs >= 0.8, hits
    assert wrong / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs), wrong


def test_min_detectable_delta_of_the_default_design_is_within_0_05() -> None:
    """The default confirmation (3 configurations, 20 fresh seeds, ~3,000 private items per
    seed) can detect ΔPGR 0.05 at 80% power after Holm: the design docs/statistics.md
    states, computed from vanilla's spread alone, the same for a null and a real effect."""
    rng = np.random.default_rng(3)
    null, _ = simulate(rng, [0.0] * 30)
    real, _ = simulate(np.random.default_rng(3), [0.08] + [0.0] * 29)
    assert null.min_detectable_delta is not None and null.min_detectable_delta <= 0.05
    assert null.min_detectable_delta == real.min_detectable_delta
    few, _ = simulate(rng, [0.0] * 30, fresh_seeds=4)
    assert few.min_detectable_delta > 0.05


def test_the_test_fails_where_it_should() -> None:
    """Guards the guards: with the test items of every fresh seed made identical (no item
    averaging) and only 2 fresh seeds, the same +0.08 is not reliably confirmed."""
    rng = np.random.default_rng(4)
    hits = sum("m0" in {c["method"] for c in simulate(
        rng, [0.08] + [0.0] * 29, fresh_seeds=2, private_items=300)[0].confirmed}
        for _ in range(60))
    assert hits / 60 < 0.8


@pytest.mark.parametrize("flags", [["ignores_teacher"], ["beyond_inputs"], [],
                                   ["transfer_at_ceiling"]])
def test_choose_skips_configurations_with_evidence_of_cheating(flags) -> None:
    explored = [{"method": "cheat", "params": {}, "public_delta": 0.9, "trials": ["t1"],
                 "agents": ["a"], "flags": flags},
                {"method": "honest", "params": {}, "public_delta": 0.1, "trials": ["t2"],
                 "agents": ["b"], "flags": []}]
    chosen = [c["method"] for c in confirmation.choose(explored, 1)]
    assert chosen == (["honest"] if set(flags) & confirmation.DISQUALIFYING else ["cheat"])


def test_decide_applies_holm_over_the_k_only() -> None:
    """Three candidates with p = 0.01, 0.02, 0.04: Holm over 3 gives 0.03, 0.04, 0.04 —
    all confirmed at 0.05 — where a correction over every submission would confirm none."""
    plan = {"alpha": 0.05, "design": {"confirmation": {"mde_delta_pgr": 0.04}}, "candidates": [
        {"name": n, "method": n, "params": {}, "public_delta": 0.1, "trials": [],
         "agents": ["a"]} for n in ("a", "b", "c")]}
    results = {n: {"trial_id": n, "estimate": {"pgr": 0.4, "se": 0.02},
                   "vs_vanilla": {"delta": 0.05, "lo": 0.01, "hi": 0.09, "se": 0.02,
                                  "df": 19.0, "p": p}}
               for n, p in zip("abc", (0.01, 0.02, 0.04), strict=True)}
    d = confirmation.decide(results, plan)
    assert [round(c["p_holm"], 3) for c in d.candidates] == [0.03, 0.04, 0.04]
    assert len(d.confirmed) == 3


def test_choose_by_family_gives_k_different_methods() -> None:
    """Four info_max variants top the board, then two other methods: `family` picks the best
    of each of three methods, `config` the three info_max variants (the old rule)."""
    deltas = [("info_max", 0.09), ("info_max", 0.08), ("info_max", 0.07), ("info_max", 0.06),
              ("aux_confidence", 0.05), ("label_smoothing", 0.04), ("vanilla_plus", -0.01)]
    explored = [{"method": m, "params": {"i": i}, "public_delta": d, "trials": [f"t{i}"],
                 "agents": ["a"], "flags": []} for i, (m, d) in enumerate(deltas)]
    fam = confirmation.choose(explored, 3)
    assert [(c["method"], c["params"]) for c in fam] == [
        ("info_max", {"i": 0}), ("aux_confidence", {"i": 4}), ("label_smoothing", {"i": 5})]
    assert [c["method"] for c in confirmation.choose(explored, 3, "config")] == ["info_max"] * 3


def test_each_audit_setting_is_sized_on_its_own_items() -> None:
    """The design's audit block sizes every setting on its own planned test split: a smaller
    split has a larger MDE and needs more seeds to reach the margin, and a setting whose MDE
    is above the margin says so before anything runs."""
    from aar_ray.config import AuditConfig, SettingConfig

    rng = np.random.default_rng(5)
    van = [float((rng.random(3000) < VANILLA).mean()) for _ in range(6)]
    d = {"items": [3000], "gap": CEIL - WEAK, "vanilla_acc": van, "vanilla_items": [3000] * 6}
    cfg = CampaignConfig(audit=AuditConfig(seeds=list(range(1000, 1012)), margin=0.01, settings=[
        SettingConfig(task="compositional", test_size=4000),
        SettingConfig(task="compositional", test_size=300)]))
    big, small = confirmation.power_design(d, cfg)["audit"]["settings"]
    assert (big["items"], small["items"]) == (4000, 300)
    assert big["mde_acc"] <= 0.01 < small["mde_acc"]
    assert big["seeds_needed_for_margin"] <= 12 < small["seeds_needed_for_margin"]
