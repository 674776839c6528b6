"""The soak benchmark's short version (about 3 minutes, fewer faults): a campaign on a 2-node
loopback cluster, with a Claude agent whose API fails 10% of the time, loses its scorer and
trial queue once each and a worker node, and is stopped by SIGTERM in its confirmation and
resumed; nothing is lost, nothing runs twice, nothing is left running."""
from __future__ import annotations

import pytest

from aar_ray.bench.soak import SoakConfig, run_soak
from aar_ray.config import CampaignConfig, ConfirmConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_short_soak_loses_nothing(small_setting, fast_student, cache_dir, tmp_path):
    base = CampaignConfig(setting=small_setting, student=fast_student, seeds=[0, 1],
                          cache_dir=cache_dir, confirm=ConfirmConfig(top_k=2, seeds=[10, 11]))
    sc = SoakConfig(minutes=3, agents=3, sample_s=10, sigterm_within_s=2, base=base,
                    faults=("scorer", "trials", "node", "api_errors", "sigterm"))
    out = run_soak(sc, tmp_path)
    faults = {f["fault"]: f for f in out["faults"]}
    assert set(faults) == set(sc.faults)
    assert all(f["survived"] for f in faults.values()), out["faults"]
    assert sum(faults["api_errors"]["injected"].values()) > 0
    assert out["trials_done"] >= sc.agents
    assert out["explored_after_resume"] == 0  # the resume went on with the confirmation
    assert (out["leaked_processes"], out["lost_trials"], out["lost_posts"],
            out["duplicate_requests"]) == (0, 0, 0, 0), out
    assert len(out["samples"]) >= 10 and all(s["pss_mib"] > 0 for s in out["samples"])
    assert sc.warmup_s == 30  # a sixth of a short run, not 10 minutes
