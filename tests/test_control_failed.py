"""Controls that cannot be dodged: a submission of agent-written code whose teacher-use control
fails, for whatever reason its code gives, is flagged `control_failed`, is never a confirmation
candidate, and its agent sees only "unverified"."""
from __future__ import annotations

import json

from aar_ray.config import CampaignConfig
from aar_ray.lab.confirmation import choose
from aar_ray.lab.scorer import Scorer
from aar_ray.w2s.trial import run_method

MAJORITY = "custom:a1/majority"  # answers the majority class; crashes when it senses its control


def test_a_failed_control_disqualifies_and_tells_the_agent_only_unverified(
        small_setting, fast_student, cache_dir, tmp_path):
    cfg = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0, 1],
                         cache_dir=cache_dir)
    scorer = Scorer(str(tmp_path), cfg)
    scorer.prepare()
    for tid, method in (("t-maj", MAJORITY), ("t-van", "vanilla")):
        preds = {s: run_method("vanilla", None, scorer.student_inputs(s), fast_student)
                 for s in cfg.seeds}
        scorer.record(tid, "a1", method, {"x": tid}, cfg.seeds, {}, preds)
        scorer.submit(tid, "a1")
    why = "FloatingPointError: numerical instability"
    flag = scorer.record_control_failed("t-maj", why)
    assert flag["kind"] == "control_failed"
    explored = scorer.explored()
    maj = next(c for c in explored if c["method"] == MAJORITY)
    assert "control_failed" in maj["flags"]
    assert MAJORITY not in {c["method"] for c in choose(explored, 5)}
    ranked = {**maj, "public_delta": 0.2}  # the best on the board: only the flag keeps it out
    assert choose([{**ranked, "flags": []}], 5) and not choose([ranked], 5)
    public = scorer.leaderboard("public")
    shown = [e for e in public if e["trial_id"] == "t-maj"]
    for entry in shown:
        assert {"kind": "unverified"} in entry["flags"]
        assert "numerical" not in json.dumps(entry)
