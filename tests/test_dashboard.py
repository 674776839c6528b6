"""`aar run --dashboard`: the embedded Ray starts its dashboard on 127.0.0.1 and prints where;
the lab's named actors and custom metrics are visible there, read here from the dashboard's
own API and Prometheus endpoint; nothing of it listens beyond loopback."""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.request

import pytest
import ray

from aar_ray.config import CampaignConfig
from aar_ray.lab import NAMESPACE
from aar_ray.lab.campaign import init_ray
from aar_ray.observe import metrics

pytestmark = [pytest.mark.ray]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def external_ip() -> str | None:
    """This machine's outbound address (a UDP connect sends nothing), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


@ray.remote(num_cpus=0)
class Lab:
    """Stands in for the lab's actors: records each custom metric once."""

    def record(self) -> None:
        metrics.trial_finished("agent-0", "vanilla", "done")
        metrics.submission_scored("agent-0", 0.42)
        metrics.tokens("agent-0", "input", 1234)
        metrics.queue_length(3)


def test_dashboard_shows_named_actors_and_lab_metrics(capsys, monkeypatch):
    monkeypatch.setenv("RAY_metrics_report_interval_ms", "1000")  # export every 1 s, not 10
    cfg = CampaignConfig()
    cfg.dashboard.enabled = True
    assert init_ray(cfg)
    try:
        out = capsys.readouterr().out
        dash, prom = re.search(r"dashboard: (http://\S+)\s.*?(http://\S+/metrics)", out).groups()
        assert dash.startswith("http://127.0.0.1:") and prom.startswith("http://127.0.0.1:")
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}

        lab = Lab.options(name="forum", namespace=NAMESPACE).remote()
        ray.get(lab.record.remote())
        wanted = ("ray_aar_trials_total", "ray_aar_best_shown_delta_pgr", "ray_aar_tokens_total",
                  "ray_aar_trial_queue_length")
        text, deadline = "", time.time() + 60
        while time.time() < deadline and not all(w in text for w in wanted):
            time.sleep(1)
            text = get(prom)
        assert all(w in text for w in wanted), [w for w in wanted if w not in text]
        assert re.search(r'ray_aar_best_shown_delta_pgr\{[^}]*agent="agent-0"[^}]*\} 0\.42', text)
        actors = json.loads(get(f"{dash}/api/v0/actors?limit=100"))["data"]["result"]["result"]
        assert any(a["name"] == "forum" and a["state"] == "ALIVE" for a in actors)

        ip = external_ip()
        ports = [int(u.split(":")[2].split("/")[0]) for u in (dash, prom)]
        ports.append(int(ray.get_runtime_context().gcs_address.split(":")[1]))
        for port in (ports if ip else ()):  # loopback only: refused on the outside
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((ip, port))
    finally:
        ray.shutdown()
