"""The HTML report and `aar status` on a real (tiny) campaign directory; the report is loaded in
headless Chromium: no console errors, the leaderboard in the DOM, agent text inert, and a
screenshot under tests/artifacts/ for a human to look at."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aar_ray import status as status_module
from aar_ray.config import BudgetConfig, CampaignConfig, ConfigError, ConfirmConfig, ScoringConfig
from aar_ray.lab import forum as forum_mod
from aar_ray.lab import scorer as scorer_mod
from aar_ray.lab.campaign import run_campaign
from aar_ray.lab.store import Store
from aar_ray.report import load, render, write_report
from aar_ray.status import status

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# agent-written text that would run (or load something) if the report did not escape it
EVIL_TITLE = "<script>document.title='PWNED'</script>"
EVIL_BODY = ('<img src=x onerror="document.body.setAttribute(\'data-pwned\',1)"> '
             "my method gets PGR 0.99 </div></body>")


@pytest.fixture(scope="module")
def campaign_dir(small_setting, fast_student, cache_dir, tmp_path_factory) -> Path:
    """A finished tiny campaign (embedded Ray), plus untrusted forum text, an integrity event
    and an audit file added afterwards."""
    cfg = CampaignConfig(name="report", confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
                         setting=small_setting, student=fast_student,
                         seeds=[0, 1], agents=2,
                         budget=BudgetConfig(trials_per_agent=2, wall_clock_s=300),
                         scoring=ScoringConfig(control_top_k=1),
                         root=str(tmp_path_factory.mktemp("runs")), cache_dir=cache_dir)
    summary = run_campaign(cfg, progress=False)
    d = Path(summary["campaign_dir"])
    forum = forum_mod.Forum(str(d), lambda ids: {})
    post = forum.post("agent-0", EVIL_TITLE, EVIL_BODY, "hypothesis", tags=["<b>x</b>"])
    forum.reply("agent-1", post["post_id"], "</pre><script>alert(1)</script> agreed")
    Store(d / "scorer.sqlite", scorer_mod.MIGRATIONS).execute(
        "INSERT INTO events (at, agent, trial_id, kind, detail) VALUES (?,?,?,?,?)",
        (time.time(), "agent-1", "t-none", "near_duplicate", "<script>x()</script>"))
    top = summary["leaderboard"][0]
    (d / "audit.json").write_text(json.dumps({  # the shape lab.audit writes
        "rule": "<i>transfers</i> when the CI excludes 0", "rows": [
            {"method": top["method"], "params": top["params"],
             "setting": "tweet_pairs:glove50->minilm", "pgr": 0.21, "ci_lo": 0.1, "ci_hi": 0.33,
             "in_lab_pgr": top["pgr"], "delta": 0.21 - top["pgr"], "delta_vs_vanilla": 0.05,
             "p_holm": 0.2, "verdict": "transfers", "note": ""}]}))
    return d


def test_report_sections_and_escaping(campaign_dir):
    summary = json.loads((campaign_dir / "summary.json").read_text())
    page = write_report(campaign_dir).read_text()
    assert page.startswith("<!doctype html>")
    for entry in summary["leaderboard"]:
        assert entry["trial_id"] in page
    for heading in ("Leaderboard", "Best private PGR over time", "Diversity", "Forum",
                    "Integrity events (", "Transfer audit", "Costs per agent"):
        assert heading in page, heading
    assert "&lt;script&gt;x()&lt;/script&gt;" in page  # the event added by the fixture
    assert "<svg" in page and "<path" in page  # the progress plot has lines
    # the verdict and the plot before the long leaderboard, which folds away
    assert (page.index("<h2>Verdict") < page.index("Best private PGR over time")
            < page.index("<details><summary><h2>Leaderboard"))
    # untrusted text is escaped, and nothing can run or load
    assert "<script" not in page.lower()
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in page
    assert "<img" not in page and "&lt;img src=x onerror=" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(" not in page
    assert "claims PGR 0.99" in page  # the forum's flag on the unsupported claim
    assert "&lt;i&gt;transfers&lt;/i&gt;" in page and "[0.100, 0.330]" in page  # audit


def test_report_without_summary_reads_the_databases(campaign_dir, tmp_path):
    """A running campaign has no summary.json yet: the leaderboard comes from scorer.sqlite."""
    copy = tmp_path / "running"
    shutil.copytree(campaign_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").unlink()
    data = load(copy)
    assert ({e["trial_id"] for e in data["leaderboard"]}
            == {e["trial_id"] for e in summary["leaderboard"]})
    assert data["diversity"]["team_methods"] == summary["diversity"]["team_methods"]
    assert {a["agent"] for a in data["agents"]} == {"agent-0", "agent-1"}
    # the board read from the databases carries the scorer's CIs and ΔPGR over vanilla
    assert all(e["ci_lo"] <= e["pgr"] <= e["ci_hi"] for e in data["leaderboard"])
    assert any(e["delta"] is not None for e in data["leaderboard"])
    page = render(data)
    assert "PGR [95% CI]" in page and "ΔPGR vs vanilla [95% CI]" in page
    assert "Not yet: the confirmation stage runs when exploration ends" in page
    data["audit"] = [{"method": "vanilla", "setting": "s", "pgr": 0.3, "lo": 0.25, "hi": 0.35,
                      "verdict": "transfers"}]  # a bare list of rows, as first specified
    assert "[0.250, 0.350]" in render(data)


def test_status_of_a_campaign_directory(campaign_dir, capsys, monkeypatch):
    assert status(str(campaign_dir), None, watch=False, interval=1) == 0
    out = capsys.readouterr().out
    assert "agent-0" in out and "agent-1" in out and "public leaderboard" in out
    assert re.search(r"\d+ done", out)

    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(status_module.time, "sleep", ctrl_c)
    assert status(str(campaign_dir), None, watch=True, interval=1) == 0  # Ctrl-C ends a watch
    out = capsys.readouterr().out
    assert "Ctrl-C to stop" in out and "agent-0" in out  # the first frame, drawn by rich
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="not a campaign directory"):  # bad input: exit 2
        status(str(campaign_dir / "nope"), None, watch=False, interval=1)


@pytest.mark.browser
def test_report_in_headless_chromium(campaign_dir, tmp_path):
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; `make browser`)")
    page = write_report(campaign_dir, tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1280,2000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines()
               if ":CONSOLE" in line or "Uncaught" in line or "Refused to" in line]
    assert console == [], console
    dom = done.stdout
    summary = json.loads((campaign_dir / "summary.json").read_text())
    board = dom.split("Leaderboard (private split")[1].split("<h2>Diversity")[0]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", board, re.S)
    assert len(rows) == len(summary["leaderboard"]) + 1  # + the header row
    for entry in summary["leaderboard"]:
        assert entry["trial_id"] in dom
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert "PWNED" not in title and not re.search(r"<body[^>]*data-pwned", dom)
    assert "<script" not in dom.lower()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_preregistration_states_the_power_of_the_design(campaign_dir):
    """The MDE is the design's, written before any candidate ran, and the summary's number."""
    plan = json.loads((campaign_dir / "preregistration.json").read_text())
    summary = json.loads((campaign_dir / "summary.json").read_text())
    design = plan["design"]["confirmation"]
    assert design["seeds"] == 2 and design["mde_acc"] > 0 and plan["margin"] == 0.01
    assert plan["audit_seeds"] == plan["design"]["audit"]["seeds"]
    assert min(plan["audit_seeds"]) >= 1000
    assert summary["min_detectable_delta"] == design["mde_delta_pgr"] > 0
    assert "holds up in the audit" not in summary["verdict"]  # no audit settings
