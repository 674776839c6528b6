"""`aar confirm`: a researcher's own configurations pre-registered as given, then the end stage
alone (confirmation on fresh seeds, audit, verdict) on a real tiny setting."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from aar_ray import cli
from aar_ray.config import (
    AuditConfig,
    CampaignConfig,
    ConfigError,
    ConfirmConfig,
    SettingConfig,
    save_campaign,
)
from aar_ray.lab import hypothesis
from aar_ray.results.verdict import LABELS
from aar_ray.sandbox.custom_methods import TEMPLATE


def test_candidates_parse_as_given() -> None:
    got = hypothesis.hypotheses(['confidence_filter {"keep": 0.6}', "vanilla"])
    assert [(c["name"], c["method"], c["params"]) for c in got] == [
        ("c1", "confidence_filter", {"keep": 0.6}), ("c2", "vanilla", {})]
    for bad in (['confidence_filter {"keep": 0.6'], ["vanilla [1, 2]"], [], ["no_such_method"]):
        with pytest.raises(ConfigError):
            hypothesis.hypotheses(bad)
    own = hypothesis.hypotheses(['mine {"k": 2}'], own=("mine",))
    assert [(c["method"], c["params"]) for c in own] == [("custom:user/mine", {"k": 2})]


@pytest.mark.ray
@pytest.mark.slow
def test_aar_confirm_writes_the_plan_and_the_verdict(small_setting, fast_student, cache_dir,
                                                      tmp_path, capsys) -> None:
    cfg = CampaignConfig(name="mine", setting=small_setting, student=fast_student,
                         seeds=[0, 1], confirm=ConfirmConfig(seeds=[10, 11]),
                         audit=AuditConfig(seeds=[1000, 1001], settings=[SettingConfig(
                             task="compositional", weak="glove50", strong="minilm_l1",
                             max_examples=600, test_size=150)]),
                         root=str(tmp_path / "runs"), cache_dir=cache_dir)
    save_campaign(cfg, tmp_path / "c.yaml")
    mine = tmp_path / "my_vanilla.py"  # the researcher's own method, run in the sandbox
    mine.write_text(TEMPLATE.replace("keep: float", "unused: float"))
    assert cli.main(["confirm", "--config", str(tmp_path / "c.yaml"),
                     "--candidate", 'confidence_filter {"keep": 0.6}',
                     "--candidate", "label_smoothing", "--candidate", "my_vanilla",
                     "--method-file", str(mine)]) == 0
    out = capsys.readouterr().out
    d = Path(out.split("campaign directory: ")[1].strip())
    plan = json.loads((d / "preregistration.json").read_text())
    summary = json.loads((d / "summary.json").read_text())
    assert plan["choose"] == "given" and plan["top_k"] == 3
    assert [(c["method"], c["params"]) for c in plan["candidates"]] == [
        ("confidence_filter", {"keep": 0.6}), ("label_smoothing", {}),
        ("custom:user/my_vanilla", {})]
    assert plan["audit_seeds"] == [1000, 1001] and plan["margin"] == 0.01
    assert summary["min_detectable_delta"] == plan["design"]["confirmation"]["mde_delta_pgr"] > 0
    assert [c["method"] for c in summary["candidates"]] == [
        "confidence_filter", "label_smoothing", "custom:user/my_vanilla"]
    assert all(c["pgr"] is not None for c in summary["candidates"])  # all ran
    for c in summary["confirmed"]:
        assert c["label"] in LABELS and c["label"] != "winner"  # the audit has no gap
        assert set(c["audit"]) == {cfg.audit.settings[0].label}
    if not summary["confirmed"]:
        assert summary["verdict"].startswith("No confirmed improvement — the campaign could")
    assert "verdict: " in out


@pytest.mark.ray
@pytest.mark.slow
def test_the_audit_runs_through_the_queue_and_the_scorer_and_resumes(
        small_setting, fast_student, cache_dir, tmp_path) -> None:
    """Audit trials are queued trials scored by a scorer of the held-out setting (its SQLite
    under audit/s0/), on the audit seeds; asked again (a resumed campaign), nothing re-runs."""
    import sqlite3

    import ray

    from aar_ray.lab import audit_stage, campaign

    cfg = CampaignConfig(name="aud", setting=small_setting, student=fast_student, seeds=[0, 1],
                         confirm=ConfirmConfig(seeds=[10, 11]),
                         audit=AuditConfig(seeds=[1000, 1001], settings=[SettingConfig(
                             task="compositional", weak="glove50", strong="minilm_l1",
                             max_examples=600, test_size=150)]),
                         root=str(tmp_path / "runs"), cache_dir=cache_dir)
    cfg.validate()
    d = campaign.new_campaign_dir(cfg)
    save_campaign(cfg, d / "config.yaml")
    started = campaign.init_ray(cfg)
    try:
        lab = campaign.start_lab(cfg, d, with_agents=False)
        configs = [{"name": "c1", "method": "confidence_filter", "params": {"keep": 0.6},
                    "trial_id": "t-main"}]
        rows = audit_stage.run(lab, configs)
        again = audit_stage.run(lab, configs)
    finally:
        if started:
            ray.shutdown()
    (row,) = rows
    assert row["trial_id"] == "t-main" and row["seeds"] == [1000, 1001]
    assert row["ci_low_acc"] <= row["delta_acc"] <= row["ci_high_acc"] and row["mde_acc"] > 0
    assert again[0]["audit_trial"] == row["audit_trial"] and again[0]["delta_acc"] == \
        row["delta_acc"]
    db = sqlite3.connect(d / "audit" / "s0" / "trials.sqlite")
    got = db.execute("SELECT agent, kind, seeds, status FROM trials").fetchall()
    assert sorted(got) == [("audit", "confirm", "[1000, 1001]", "done")] * 2
