"""A scorer that cannot be gamed: the red-team suite end to end, every built-in method passes
the teacher-use control, and every tool survives fuzzed input with a clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aar_ray.config import CampaignConfig, ScoringConfig
from aar_ray.lab.scorer import Scorer
from aar_ray.lab.tools import TOOLS, LabToolbox
from aar_ray.sandbox.redteam import redteam
from aar_ray.w2s.methods import METHODS
from aar_ray.w2s.trial import run_method


@pytest.mark.ray
@pytest.mark.slow
def test_redteam_attacks_are_all_blocked_or_flagged(small_setting, fast_student, cache_dir,
                                                     tmp_path):
    cfg = CampaignConfig(name="rt", setting=small_setting, student=fast_student, seeds=[0, 1],
                         agents=1, root=str(tmp_path), cache_dir=cache_dir,
                         scoring=ScoringConfig(submissions_per_agent=6))
    cfg.budget.trials_per_agent = 20
    rows = {r["attack"].split(" (")[0]: r for r in redteam(cfg)}
    for name, row in rows.items():
        if name != "integrity events recorded":
            assert row["outcome"] in ("blocked", "flagged"), row
    prober = next(r for n, r in rows.items() if n.startswith("prober"))
    private = float(prober["labels_recovered"].split("private ")[1].split(" ")[0])
    assert private <= 0.55
    for attack in ("method reads the packaged label file", "method calls subprocess",
                   "method opens a socket", "method uses ctypes",
                   "method reads the scorer's database"):
        assert "SandboxViolation" in rows[attack]["detail"]
    assert "near_duplicate" in rows["integrity events recorded"]["detail"]


def test_builtin_methods_pass_the_teacher_use_control(small_setting, fast_student, cache_dir,
                                                      tmp_path):
    """With the teacher's labels shuffled, every built-in method loses most of its PGR: no
    legitimate method is flagged as ignoring the teacher."""
    cfg = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0, 1],
                         cache_dir=cache_dir)
    scorer = Scorer(str(tmp_path), cfg)
    scorer.prepare()
    for name in METHODS.names():
        preds = {s: run_method(name, None, scorer.student_inputs(s), fast_student)
                 for s in cfg.seeds}
        scorer.record(name, name, name, {}, cfg.seeds, {}, preds)
        scorer.submit(name, name)
        seeds = [s for s in cfg.seeds for _ in range(2)]
        control = [run_method(name, None, scorer.student_inputs(s, r), fast_student)
                   for s in cfg.seeds for r in range(2)]
        flag = scorer.record_control(name, seeds, control)
        assert not flag["ignores_teacher"], (name, flag)


class NullActor:
    """Stands in for forum, scorer and queue: anything reaching it was valid input."""

    def __getattr__(self, name):
        return lambda *a, **k: {"ok": True}


@pytest.fixture(scope="module")
def toolbox(tmp_path_factory):
    ws = tmp_path_factory.mktemp("campaign") / "agents" / "fuzz"
    return LabToolbox("fuzz", ws, CampaignConfig(), forum=NullActor(), scorer=NullActor(),
                      queue=NullActor())


FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the toolbox is module-scoped, stateless
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=4),
    max_leaves=12)


@pytest.mark.parametrize("tool", sorted(TOOLS))
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(args=json_values)
def test_every_tool_survives_fuzzed_input(toolbox, tool, args):
    out = toolbox.call(tool, args)
    assert isinstance(out.content, str) and out.content
    if out.is_error:
        assert len(out.content) < 5000 and "Traceback" not in out.content
    else:
        json.loads(out.content)


@pytest.mark.parametrize("tool", sorted(TOOLS))
@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_every_tool_survives_fuzzed_fields(toolbox, tool, data):
    """Inputs shaped like the schema (right keys) but with arbitrary values."""
    props = TOOLS[tool].schema["properties"]
    args = {k: data.draw(json_values) for k in props if data.draw(st.booleans())}
    out = toolbox.call(tool, args)
    assert isinstance(out.content, str) and out.content
    assert np.isscalar(out.is_error)
