"""`aar rerun` reports whether the recorded student is the one config.yaml names."""
from __future__ import annotations

import dataclasses

import pytest

from aar_ray.config import CampaignConfig, save_campaign
from aar_ray.lab.scorer import Scorer
from aar_ray.lab.trials import provenance
from aar_ray.results.rerun import rerun
from aar_ray.w2s.trial import run_method


@pytest.mark.parametrize("drift", [False, True])
def test_rerun_flags_a_student_that_differs_from_config(drift, tmp_path, small_setting,
                                                        fast_student, cache_dir):
    cfg = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0],
                         cache_dir=cache_dir)
    cfg.validate()
    save_campaign(cfg, tmp_path / "config.yaml")
    ran = dataclasses.replace(fast_student, epochs=fast_student.epochs + 1) if drift \
        else fast_student
    scorer = Scorer(str(tmp_path), cfg)
    scorer.prepare()
    prov = provenance(cfg, "vanilla")
    prov["student"] = dataclasses.asdict(ran)
    preds = {0: run_method("vanilla", {}, scorer.student_inputs(0), ran)}
    scorer.record("t1", "a", "vanilla", {}, [0], prov, preds)
    scorer.store.db.close()
    out = rerun(tmp_path, "t1")
    assert out["student_matches_config"] is (not drift)
    assert out["within_ci"]
