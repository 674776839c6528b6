"""The winner rule (`results.verdict`) by simulation, without models: whole end stages — a
paired confirmation on the main setting, then an audit of three held-out settings against
vanilla on fresh seeds — judged by the code the lab runs. A true winner is found; a
setting-specific trick and a null are not crowned."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from aar_ray.results import stats, verdict

MARGIN = 0.01  # 1 accuracy point, the default `audit.margin`
VANILLA = 0.80
DISAGREE = 0.08  # share of items where the method's answer differs from vanilla's
TRAIN_SD = 0.003  # seed-to-seed (training) noise of a method's accuracy


def _setting(rng, delta_acc: float, seeds: int, items: int):
    """(method, vanilla) per-seed 0/1 arrays: the method's accuracy is vanilla's + delta_acc
    (+ training noise), differing from vanilla on DISAGREE of the items."""
    m, v = [], []
    for _ in range(seeds):
        van = rng.random(items) < VANILLA
        flip = rng.random(items) < DISAGREE
        shift = delta_acc + rng.normal(0, TRAIN_SD)
        right = rng.random(items) < np.clip(VANILLA + shift / DISAGREE, 0, 1)
        m.append(np.where(flip, right, van))
        v.append(van)
    return m, v


def simulate(rng, main: float, audit: list[float], *, seeds: int = 12, items: int = 3000,
             usable: bool = True) -> str | None:
    """One end stage: None if the main setting does not confirm, else the label."""
    m, v = _setting(rng, main, 20, 3000)
    w = [rng.random(3000) < 0.7 for _ in m]
    c = [rng.random(3000) < 0.9 for _ in m]
    cmp = stats.paired_compare(m, v, w, c)
    if not (cmp.p_value < 0.05 and cmp.delta_pgr > 0):
        return None
    entries = {}
    for i, d in enumerate(audit):
        m, v = _setting(rng, d, seeds, items)
        mde = verdict.vanilla_mde_acc(v, disagreement=DISAGREE)
        e = verdict.acc_evidence(m, v, mde).to_dict()
        entries[f"s{i}"] = {**e, "usable": usable}
    return verdict.label(entries, MARGIN)


def rate(label: str, runs: int, **kw) -> float:
    rng = np.random.default_rng(zlib.crc32(repr(sorted(kw.items())).encode()))
    return sum(simulate(rng, **kw) == label for _ in range(runs)) / runs


SLACK = 2 * np.sqrt(0.05 * 0.95 / 200)


def test_a_true_winner_non_inferior_everywhere_is_labelled_winner() -> None:
    """+1.5 points on the main setting, +1 on one audit setting, 0 on two: winner >= 80%."""
    assert rate("winner", 200, main=0.015, audit=[0.01, 0.0, 0.0]) >= 0.8


def test_a_setting_specific_trick_is_not_a_winner() -> None:
    """Better on the main setting, better on two audit settings, 3 points worse on one:
    winner <= 5% (the old majority rule crowned it), setting_specific >= 80%."""
    kw = dict(main=0.015, audit=[0.01, 0.01, -0.03])
    assert rate("winner", 200, **kw) <= 0.05 + SLACK
    assert rate("setting_specific", 200, **kw) >= 0.8


def test_a_null_is_not_a_winner() -> None:
    """Equal to vanilla everywhere: winner <= 5%."""
    assert rate("winner", 200, main=0.0, audit=[0.0, 0.0, 0.0]) <= 0.05 + SLACK


def test_an_underpowered_or_gapless_audit_is_never_a_pass() -> None:
    """The true winner of the first test, audited on 2 seeds of 200 items (MDE > δ) or on
    settings with no usable gap: never winner — inconclusive."""
    assert rate("winner", 100, main=0.015, audit=[0.01, 0.0, 0.0], seeds=2, items=200) == 0
    assert rate("inconclusive", 100, main=0.015, audit=[0.01, 0.0, 0.0], usable=False) >= 0.8


def _entry(lo: float, hi: float, mde: float = 0.005, usable: bool = True) -> dict:
    return {"delta_acc": (lo + hi) / 2, "ci_low_acc": lo, "ci_high_acc": hi, "mde_acc": mde,
            "usable": usable}


@pytest.mark.parametrize(("settings", "want"), [
    ({}, "inconclusive"),  # no audit settings: transfer never tested
    ({"a": _entry(0.002, 0.02), "b": _entry(-0.005, 0.005)}, "winner"),
    ({"a": _entry(-0.005, 0.005), "b": _entry(-0.004, 0.006)}, "inconclusive"),  # no gain
    ({"a": _entry(0.002, 0.02), "b": _entry(-0.02, 0.004)}, "setting_specific"),
    ({"a": _entry(0.002, 0.02), "b": _entry(-0.3, -0.1, mde=0.2)}, "setting_specific"),
    ({"a": _entry(0.002, 0.02), "b": _entry(-0.005, 0.03, mde=0.02)}, "inconclusive"),
    ({"a": _entry(0.002, 0.02), "b": {"usable": True}}, "inconclusive"),  # did not run
    ({"a": _entry(0.002, 0.02), "b": _entry(0.0, 0.01, usable=False)}, "inconclusive"),
])
def test_label_cases(settings, want) -> None:
    assert verdict.label(settings, MARGIN) == want


def _confirmed(lab: str) -> dict:
    return {"method": "m", "params": {}, "delta": 0.1, "ci_low": 0.05, "ci_high": 0.15,
            "p_holm": 0.001, "label": lab}


@pytest.mark.parametrize("lab", ["setting_specific", "inconclusive"])
def test_the_sentence_never_calls_a_non_winner_an_improvement(lab) -> None:
    s = verdict.sentence([_confirmed(lab)], 0.03)
    assert "holds up" not in s and "improvement over vanilla that" not in s
    assert ("Setting-specific" in s) == (lab == "setting_specific")


def test_the_sentence_of_a_null_campaign_states_its_power() -> None:
    assert verdict.sentence([], 0.0314) == (
        "No confirmed improvement — the campaign could have detected ΔPGR ≥ 0.031.")
    assert "holds up in the audit" in verdict.sentence([_confirmed("winner")], 0.03)
