"""Observability: the lab's Prometheus metrics on a real cluster's metrics export port, `aar
status` against live actors, and one W&B offline run per trial with the fields the UI needs."""
from __future__ import annotations

import json
import re
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray

from aar_ray.config import BudgetConfig, CampaignConfig, ConfirmConfig, ScoringConfig, save_campaign
from aar_ray.observe import metrics, tracking
from aar_ray.observe.tracking import log_trial, run_id
from aar_ray.status import MissingActor, live_text, status

SERIES = re.compile(r'^(ray_aar_\w+)\{([^}]*)\}\s+(\S+)$', re.M)


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The `ray_aar_*` samples on a metrics export port: (name, labels, value)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return []
    return [(name, dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value))
            for name, labels, value in SERIES.findall(text)]


def poll(port: int, done, timeout: float) -> list[tuple[str, dict[str, str], float]]:
    """Scrape until `done(samples)`; Ray exports custom metrics every few seconds."""
    deadline = time.time() + timeout
    samples = scrape(port)
    while not done(samples) and time.time() < deadline:
        time.sleep(1)
        samples = scrape(port)
    return samples


def value(samples, name: str, **labels: str) -> float | None:
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == x for k, x in labels.items()):
            return v
    return None


def test_metric_functions_are_noops_without_ray():
    if ray.is_initialized():
        pytest.skip("Ray is initialised in this process")
    t0 = time.time()
    metrics.trial_finished("probe-0", "vanilla", "done")
    metrics.submission_scored("probe-0", 0.5)
    metrics.tokens("probe-0", "input", 10)
    metrics.tool_latency("run_trial", 0.1)
    metrics.queue_length(2)
    assert not ray.is_initialized() and time.time() - t0 < 1


def test_status_without_a_campaign_or_cluster(capsys, monkeypatch):
    if ray.is_initialized():
        pytest.skip("Ray is initialised in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from ray._private import services  # no cluster started here, whatever else runs here

    monkeypatch.setattr(services, "find_bootstrap_address", lambda _temp_dir: None)
    assert status(None, None) == 2
    assert "give a campaign directory" in capsys.readouterr().err
    t0 = time.time()
    assert status(None, "127.0.0.1:1") == 1  # nothing listens: fail fast, no Ray retries
    assert "cannot connect to Ray at 127.0.0.1:1" in capsys.readouterr().err
    assert time.time() - t0 < 10 and not ray.is_initialized()


# ---- a real cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connected(cluster):
    """This test process as a driver of the `cluster` fixture's head."""
    ray.init(address=cluster["gcs"], namespace="aar-test", log_to_driver=False)
    yield cluster
    ray.shutdown()


@ray.remote(num_cpus=0)
class Emitter:
    """Calls every metric function from a worker process (the lab's actors will)."""

    def emit(self) -> None:
        metrics.trial_finished("probe-0", "vanilla", "done")
        metrics.trial_finished("probe-0", "vanilla", "done")
        metrics.trial_finished("probe-1", "soft_labels", "error")
        metrics.submission_scored("probe-0", 0.42)
        metrics.submission_scored("probe-1", None)  # nothing shown yet: no gauge value
        metrics.integrity_event("probe")
        metrics.tokens("probe-0", "input", 1200)
        metrics.tokens("probe-0", "output", 0)  # ignored: counters only go up
        metrics.dollars("probe-0", 0.05)
        metrics.dollars("probe-0", -1.0)  # ignored, never raises
        metrics.queue_length(3)
        metrics.forum_post("probe")
        metrics.tool_latency("run_trial", 0.2)
        metrics.tool_latency("run_trial", 7.0)
        metrics.trial_finished(None, {"odd": 1}, 3)  # type: ignore[arg-type] - never raises


@pytest.mark.ray
@pytest.mark.slow
def test_metrics_exported_on_the_metrics_port(connected):
    emitter = Emitter.remote()
    ray.get(emitter.emit.remote())
    want = {"ray_aar_trials_total", "ray_aar_best_shown_delta_pgr", "ray_aar_submissions_total",
            "ray_aar_integrity_events_total", "ray_aar_tokens_total", "ray_aar_dollars_total",
            "ray_aar_trial_queue_length", "ray_aar_forum_posts_total",
            "ray_aar_tool_latency_seconds_bucket", "ray_aar_tool_latency_seconds_count"}
    samples = poll(connected["metrics"], lambda s: want <= {n for n, _, _ in s}, timeout=60)
    assert want <= {n for n, _, _ in samples}, sorted({n for n, _, _ in samples})
    assert value(samples, "ray_aar_trials_total", agent="probe-0", method="vanilla",
                 status="done") == 2
    assert value(samples, "ray_aar_trials_total", agent="probe-1", status="error") == 1
    assert value(samples, "ray_aar_best_shown_delta_pgr", agent="probe-0") == pytest.approx(0.42)
    assert value(samples, "ray_aar_best_shown_delta_pgr", agent="probe-1") is None
    assert value(samples, "ray_aar_submissions_total", agent="probe-1") == 1
    assert value(samples, "ray_aar_tokens_total", agent="probe-0", kind="input") == 1200
    assert value(samples, "ray_aar_tokens_total", kind="output") is None
    assert value(samples, "ray_aar_dollars_total", agent="probe-0") == pytest.approx(0.05)
    assert value(samples, "ray_aar_trial_queue_length") == 3
    assert value(samples, "ray_aar_tool_latency_seconds_count", tool="run_trial") == 2
    assert value(samples, "ray_aar_tool_latency_seconds_bucket", tool="run_trial",
                 le="0.25") == 1
    ray.kill(emitter)


@pytest.fixture(scope="module")
def live_campaign(connected, small_setting, fast_student, cache_dir, tmp_path_factory):
    """A tiny campaign driven by `aar run` with RAY_ADDRESS set to the cluster; while it runs,
    record what `aar status` shows of the live actors and scrape the metrics port."""
    tmp = tmp_path_factory.mktemp("live")
    cfg = CampaignConfig(name="live", confirm=ConfirmConfig(top_k=2, seeds=[10, 11]),
                         setting=small_setting, student=fast_student, seeds=[0, 1],
                         agents=2, budget=BudgetConfig(trials_per_agent=2, wall_clock_s=300),
                         scoring=ScoringConfig(control_top_k=0),
                         root=str(tmp / "runs"), cache_dir=cache_dir)
    save_campaign(cfg, tmp / "live.yaml")
    env = {**connected["env"], "RAY_ADDRESS": connected["gcs"]}
    proc = subprocess.Popen([sys.executable, "-m", "aar_ray.cli", "run", "--no-progress",
                             "--config", str(tmp / "live.yaml")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    views, samples = [], {}
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        try:
            views.append(live_text())
        except (MissingActor, ray.exceptions.RayError):
            pass
        samples.update({(n, tuple(sorted(lab.items()))): v
                        for n, lab, v in scrape(connected["metrics"])})
        time.sleep(1)  # the cluster exports every second; a dead worker's gauges age out
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0]
    dirs = list((tmp / "runs").glob("live-*"))
    return {"rc": proc.returncode, "out": out, "views": views, "samples": samples,
            "dir": dirs[0] if dirs else None}


@pytest.mark.ray
@pytest.mark.slow
def test_status_of_live_actors(live_campaign, connected, capsys):
    assert live_campaign["rc"] == 0, live_campaign["out"][-3000:]
    views = [v for v in live_campaign["views"] if "public leaderboard" in v]
    assert views, "aar status never saw the live actors"
    assert re.search(r"trials: \d+ queued, \d+ running, \d+ done", views[-1])
    assert "agent-0" in "".join(views)
    # the driver exited, so its actors are gone: a clear message, not a traceback
    deadline = time.time() + 30
    while status(None, connected["gcs"]) != 1 and time.time() < deadline:
        time.sleep(1)
    assert "no live actor 'trials'" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_campaign_exports_lab_metrics(live_campaign, connected):
    """The lab's own calls (not the probe above): series labelled with the campaign's agents."""
    assert live_campaign["rc"] == 0, live_campaign["out"][-3000:]

    def lab_series(samples) -> set[str]:
        return {n for n, lab, _ in samples
                if lab.get("agent", "agent-").startswith(("agent-", "baseline"))
                and lab.get("kind") != "probe"}

    found = lab_series((n, dict(lab), v) for (n, lab), v in live_campaign["samples"].items())
    if "ray_aar_trials_total" not in found:  # export lags; look once more after the run
        found |= lab_series(poll(connected["metrics"],
                                 lambda s: "ray_aar_trials_total" in lab_series(s), timeout=15))
    assert {"ray_aar_trials_total", "ray_aar_submissions_total",
            "ray_aar_forum_posts_total"} <= found, sorted(found)


@pytest.mark.ray
@pytest.mark.slow
def test_campaign_logs_one_wandb_run_per_trial(live_campaign):
    """The queue logs every finished trial (the teacher-use controls too) to W&B, offline,
    and the campaign its verdict in one summary run."""
    d = live_campaign["dir"]
    assert live_campaign["rc"] == 0 and d is not None, live_campaign["out"][-3000:]
    with sqlite3.connect(d / "trials.sqlite") as db:
        done = {r[0] for r in db.execute("SELECT trial_id FROM trials WHERE status='done'")}
    runs = [read_run(p, timeout=2) for p in sorted((d / "wandb").glob("offline-run-*"))]
    assert [r["job_type"] for r in runs].count("summary") == 1
    runs = [r for r in runs if r["job_type"] != "summary"]
    assert done and {r.get("name") for r in runs} == done, (
        f"trials without a complete W&B run: {done - {r.get('name') for r in runs}}")


# ---- W&B -------------------------------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """Records of an offline run's `.wandb` file: wandb 0.31 offline writes no config.yaml or
    wandb-summary.json, only this LevelDB-log of protobuf records (32 KiB blocks, 7-byte
    headers: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, chunk, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:  # zero padding up to the next block
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


def read_run(run_dir: Path, timeout: float = 10.0) -> dict:
    """group, job_type, name, id, config and summary of an offline run, as wandb stored them.
    `run.finish()` returns before wandb-core has flushed the file (seen under load: only the
    7-byte header right after finish), so wait for the run and summary records."""
    deadline = time.time() + timeout
    while True:
        records = wandb_records(next(run_dir.glob("run-*.wandb")))
        kinds = {r.WhichOneof("record_type") for r in records}
        if {"run", "summary"} <= kinds or time.time() > deadline:
            break
        time.sleep(0.1)
    out: dict = {"config": {}, "summary": {}}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(id=r.run.run_id, group=r.run.run_group, job_type=r.run.job_type,
                       name=r.run.display_name, project=r.run.project, tags=list(r.run.tags))
            out["config"].update({i.key: json.loads(i.value_json)
                                  for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json)
                                   for i in r.summary.update if i.key})
    return out


def fake_scores(pgr_0: float, pgr_1: float) -> dict:
    per_seed = [{"seed": 0, "weak_acc": 0.6, "ceiling_acc": 0.8, "transfer_acc": 0.6 + 0.2 * pgr_0,
                 "pgr": pgr_0},
                {"seed": 1, "weak_acc": 0.62, "ceiling_acc": 0.82,
                 "transfer_acc": 0.62 + 0.2 * pgr_1, "pgr": pgr_1}]
    return {"pgr": (pgr_0 + pgr_1) / 2, "se": abs(pgr_0 - pgr_1) / 2, "per_seed": per_seed}


def test_wandb_offline_run_per_trial(tmp_path, monkeypatch, small_setting):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = CampaignConfig(setting=small_setting)
    trials = [{"trial_id": "t0001", "agent": "agent-0", "method": "soft_labels",
               "params": {"temperature": 2.0, "nested": {"k": 1}}, "seeds": [0, 1]},
              {"trial_id": "t0002", "agent": "agent-1", "method": "vanilla", "params": {},
               "seeds": [0, 1]}]
    dirs = [log_trial("camp-1", str(tmp_path / "c"), cfg, t, "calibration", fake_scores(0.3, 0.5))
            for t in trials]
    assert all(dirs) and len(set(dirs)) == 2
    run = read_run(Path(dirs[0]))
    assert Path(dirs[0]).parent == tmp_path / "c" / "wandb"
    assert run["id"] == run_id("camp-1", "t0001") and run["name"] == "t0001"
    assert run["group"] == "camp-1" and run["job_type"] == "soft_labels"
    assert run["project"] == cfg.wandb.project
    c = run["config"]
    assert c["agent"] == "agent-0" and c["direction"] == "calibration"
    assert c["method"] == "soft_labels" and c["params"]["temperature"] == 2.0
    assert c["param.temperature"] == 2.0 and c["param.nested.k"] == 1
    assert c["seeds"] == [0, 1] and c["n_seeds"] == 2
    assert (c["task"], c["weak"], c["strong"], c["student_mode"]) == (
        small_setting.task, small_setting.weak, small_setting.strong, "head")
    s = run["summary"]
    assert s["pgr"] == pytest.approx(0.4) and s["pgr_se"] == pytest.approx(0.1)
    assert s["transfer_acc"] == pytest.approx((0.66 + 0.72) / 2)
    assert s["weak_acc"] == pytest.approx(0.61) and s["ceiling_acc"] == pytest.approx(0.81)
    assert s["seed/1/pgr"] == pytest.approx(0.5)
    assert s["seed/0/transfer_acc"] == pytest.approx(0.66)
    assert read_run(Path(dirs[1]))["job_type"] == "vanilla"

    # a rerun of the same trial does not add a second run
    again = log_trial("camp-1", str(tmp_path / "c"), cfg, trials[0], "calibration",
                      fake_scores(0.3, 0.5))
    assert again == dirs[0]
    assert len(list((tmp_path / "c" / "wandb").glob(f"*-{run_id('camp-1', 't0001')}"))) == 1


@pytest.mark.parametrize("agent, kind, source, job_type", [
    ("baseline", "baseline", "baseline", "vanilla"),
    ("sweep-optuna", "agent", "sweep:optuna", "vanilla"),
    ("sweep-optuna", "control", "control", "control:vanilla"),
    ("confirm", "confirm", "confirmation", "vanilla"),
])
def test_wandb_runs_of_a_sweep_campaign_say_who_ran_them(tmp_path, monkeypatch, agent, kind,
                                                         source, job_type):
    """A sweep campaign's baseline, sweep, control and confirmation runs each say so, and
    carry ΔPGR over vanilla with its CI, the flags and the explorer."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = CampaignConfig(explorer="sweep")
    trial = {"trial_id": f"t-{kind}", "agent": agent, "method": "vanilla", "params": {},
             "seeds": [0, 1], "kind": kind, "parent": None}
    scores = {**fake_scores(0.3, 0.5), "flags": ["near_duplicate"],
              "vs_vanilla": {"delta": 0.04, "lo": -0.01, "hi": 0.09, "p": 0.12}}
    run = read_run(Path(log_trial("sweep-1", str(tmp_path), cfg, trial, "", scores)))
    c, s = run["config"], run["summary"]
    assert (c["source"], c["kind"], c["explorer"], run["job_type"]) == (
        source, kind, "sweep", job_type)
    assert source in run["tags"] and "sweep" in run["tags"]
    assert (s["delta_pgr"], s["delta_pgr_ci_lo"], s["delta_pgr_ci_hi"], s["delta_pgr_p"]) == (
        0.04, -0.01, 0.09, 0.12)
    assert s["flags"] == "near_duplicate"


def test_wandb_verdict_is_a_table_in_a_summary_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = {"verdict": "no method beats vanilla", "confirmed": [], "candidates": [
        {"name": "c1", "method": "info_max", "params": {"w": 1}, "public_delta": 0.05,
         "delta": 0.01, "ci_low": -0.02, "ci_high": 0.04, "p_holm": 0.6, "confirmed": False}]}
    path = tracking.log_verdict("camp", str(tmp_path), CampaignConfig(), summary)
    run = read_run(Path(path))
    assert run["job_type"] == "summary" and run["summary"]["verdict_text"] == summary["verdict"]
    (table,) = Path(path).glob("files/media/table/verdict_*.table.json")  # the wandb.Table
    data = json.loads(table.read_text())
    assert data["columns"][:2] == ["name", "method"] and data["data"][0][:2] == ["c1", "info_max"]


def test_wandb_disabled_or_broken_never_raises(tmp_path, monkeypatch, caplog):
    cfg = CampaignConfig()
    trial = {"trial_id": "t1", "agent": "a", "method": "vanilla", "params": {}, "seeds": [0]}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    t0 = time.time()
    assert log_trial("c", str(tmp_path), cfg, trial, "", fake_scores(0.1, 0.2)) is None
    assert time.time() - t0 < 0.5 and not (tmp_path / "wandb").exists()
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg.wandb.mode = "disabled"  # the config's explicit opt-out wins over the environment
    assert log_trial("c", str(tmp_path), cfg, trial, "", fake_scores(0.1, 0.2)) is None
    cfg.wandb.mode = "offline"
    assert log_trial("c", str(tmp_path), cfg, {"agent": "a"}, "", {}) is None  # no trial_id
    assert "could not log trial" in caplog.text
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # a campaign directory that cannot hold runs
    assert log_trial("c", str(not_a_dir), cfg, trial, "", fake_scores(0.1, 0.2)) is None
