"""The `aar` command at its edges: every expected failure is one line and a documented exit code
(aar_ray/exits.py: 2 = bad input, 1 = failure), checked before anything slow starts."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aar_ray import cli, exits
from aar_ray.config import CampaignConfig, ConfigError
from aar_ray.lab import campaign

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = str(REPO / "jobs" / "configs" / "embedded.yaml")


def _aar(*args: str, env: dict[str, str] | None = None, pythonpath: str = "") -> tuple[
        subprocess.CompletedProcess, float]:
    env = {**os.environ, **(env or {})}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "aar_ray.cli", *args], capture_output=True,
                         text=True, env=env, timeout=120, cwd=REPO)
    return out, time.time() - t0


@pytest.fixture
def no_campaign(monkeypatch):
    """Fail the test if a campaign (and so Ray) would start."""
    def refuse(*_a, **_k):
        raise AssertionError("a campaign started")

    monkeypatch.setattr(campaign, "init_ray", refuse)


def test_a_broken_entry_point_fails_aar_methods_in_one_line_naming_it(tmp_path):
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[aar_ray.methods]\nbroken = no_such_module:X\n")
    out, _ = _aar("methods", pythonpath=str(tmp_path))
    assert out.returncode == exits.BAD_INPUT, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken = 'no_such_module:X'" in lines[0], out.stderr
    # a command that never reads the methods catalog is not broken by it
    out, _ = _aar("status", str(tmp_path / "nope"), pythonpath=str(tmp_path))
    assert "no_such_module" not in out.stderr


def test_claude_without_a_key_exits_fast_and_starts_no_ray(tmp_path):
    env = {k: "" for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_FILE")}
    out, seconds = _aar("run", "--config", EMBEDDED, "--brain", "claude", "--root",
                        str(tmp_path / "runs"), env=env)
    assert out.returncode == exits.BAD_INPUT, out.stderr
    assert seconds < 5, seconds
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0], out.stderr
    assert not (tmp_path / "runs").exists()  # no campaign directory, so no Ray was started


def test_claude_without_a_key_is_refused_before_ray_in_process(tmp_path, monkeypatch, capsys,
                                                               no_campaign):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY_FILE", raising=False)
    assert cli.main(["run", "--config", EMBEDDED, "--brain", "claude",
                     "--root", str(tmp_path)]) == exits.BAD_INPUT
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [
    (["--agents", "0"], "agents"),
    (["--agents", "-3"], "agents"),
])
def test_run_refuses_impossible_flags_by_name(flags, named, tmp_path, capsys, no_campaign):
    assert cli.main(["run", "--config", EMBEDDED, "--root", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err


@pytest.mark.parametrize("seeds", ["-1", "0,,1", "0,-2", "1,1", "a", ""])
def test_seeds_refused_by_name(seeds, capsys):
    with pytest.raises(ConfigError, match="--seeds"):
        cli.parse_seeds(seeds)
    assert cli.main(["trial", "--seeds", seeds]) == exits.BAD_INPUT
    assert "--seeds" in capsys.readouterr().err


def test_seeds_accepted():
    assert cli.parse_seeds("0,1, 2") == [0, 1, 2]


def test_config_refuses_negative_seeds():
    with pytest.raises(ConfigError, match="config.seeds"):
        CampaignConfig(seeds=[0, -1]).validate()


def test_status_and_report_agree_on_a_bad_directory(tmp_path, capsys):
    bad = str(tmp_path / "nope")
    assert cli.main(["status", bad]) == cli.main(["report", bad]) == exits.BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("not a campaign directory" in line for line in err)


@pytest.mark.parametrize("weak, ceiling, warns", [(0.80, 0.81, True), (0.80, 0.849, True),
                                                  (0.80, 0.851, False), (0.70, 0.90, False)])
def test_a_small_gap_warns_before_agents_start(weak, ceiling, warns):
    line = campaign.gap_warning(CampaignConfig(), {"weak_acc": weak, "ceiling_acc": ceiling})
    assert (line is not None) == warns
    if warns:
        assert "scoring.min_gap" in line and f"{100 * (ceiling - weak):.1f} points" in line


def test_the_gap_minimum_is_configurable():
    cfg = CampaignConfig()
    cfg.scoring.min_gap = 0.0
    assert campaign.gap_warning(cfg, {"weak_acc": 0.8, "ceiling_acc": 0.8}) is None


def test_failures_to_reach_ray_or_claude_are_one_line_exit_1():
    import anthropic
    import httpx2 as httpx

    assert exits.classify(ConnectionError("GCS at 127.0.0.1:1 refused"))[0] == exits.FAILURE
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/messages")
    code, line = exits.classify(anthropic.APIConnectionError(request=request))
    assert code == exits.FAILURE and "\n" not in line
    assert exits.classify(ConfigError("x: bad")) == (exits.BAD_INPUT, "aar: error: x: bad")
    assert exits.classify(KeyError("bug")) is None  # a bug keeps its traceback
