"""Every address form a Ray user types reaches the cluster: `aar status` against a loopback
`ray start --head` by its GCS address and by its dashboard's http:// URL (the Jobs API)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import ray

from aar_ray import connect
from aar_ray.config import ConfigError
from aar_ray.lab import NAMESPACE


@ray.remote(num_cpus=0)
class FakeLabActor:
    """What `aar status` reads from the live `trials`, `scorer` and `forum` actors."""

    def counts(self, kind=None):
        return {"queued": 1, "running": 0, "done": 2, "error": 0}

    def list(self, **_):
        return [{"agent": "agent-0", "status": "done"}, {"agent": "agent-0", "status": "done"},
                {"agent": "agent-1", "status": "queued"}]

    def leaderboard(self, part, top):
        return [{"delta": 0.125, "agent": "agent-0", "method": "vanilla", "params": {}}]

    def count(self):
        return 7


@pytest.fixture(scope="module")
def live_lab(cluster):
    ray.init(address=cluster["gcs"], namespace=NAMESPACE, log_to_driver=False)
    actors = [FakeLabActor.options(name=n).remote() for n in ("trials", "scorer", "forum")]
    ray.get([a.count.remote() for a in actors])
    yield cluster
    ray.shutdown()


def _status(cluster, *args, env=None):
    return subprocess.run([sys.executable, "-m", "aar_ray.cli", "status", *args],
                          capture_output=True, text=True, timeout=180,
                          env={**cluster["env"], **(env or {})})


@pytest.mark.parametrize("how", ["gcs-flag", "gcs-env", "http-flag", "http-env"])
def test_status_reaches_a_loopback_cluster(live_lab, how):
    url = live_lab["gcs"] if how.startswith("gcs") else live_lab["address"]
    if how.endswith("flag"):
        out = _status(live_lab, "--address", url)
    else:
        out = _status(live_lab, env={"RAY_ADDRESS": url})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "live campaign" in out.stdout and "2 done" in out.stdout, out.stdout
    assert "forum posts: 7" in out.stdout


def test_an_unreachable_gcs_fails_in_one_line(cluster):
    out = _status(cluster, "--address", "127.0.0.1:1")
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("text, kind, value", [
    ("10.0.0.5:6379", "gcs", "10.0.0.5:6379"),
    ("ray://head:10001", "client", "ray://head:10001"),
    ("http://127.0.0.1:8265/", "dashboard", "http://127.0.0.1:8265"),
    ("HTTPS://head:8265", "dashboard", "HTTPS://head:8265"),
    ("local", "local", "local"),
])
def test_address_forms(text, kind, value):
    assert connect.resolve(text) == connect.Address(kind, value)


@pytest.mark.parametrize("text", ["head", "ftp://head:1", "head:port", "http://"])
def test_an_address_of_no_known_form_is_refused(text):
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        connect.resolve(text)


def test_no_address_means_embedded_unless_asked_to_find_one(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert connect.resolve(None).kind == "local"


def test_run_at_a_dashboard_url_says_what_to_use(monkeypatch):
    from aar_ray.config import CampaignConfig
    from aar_ray.lab import campaign

    monkeypatch.setattr(campaign.ray, "is_initialized", lambda: False)  # the module's driver
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(ConfigError, match="ray job submit --address http://127.0.0.1:8265"):
        campaign.init_ray(CampaignConfig())


@pytest.mark.parametrize("env, embedded, mode", [
    ({}, True, "disabled"),
    ({}, False, "disabled"),
    ({"RAY_AUTH_TOKEN": "t"}, False, "token"),
    ({"RAY_AUTH_TOKEN": "t"}, True, "disabled"),
    ({"RAY_AUTH_MODE": "token"}, True, "token"),
])
def test_one_auth_rule(env, embedded, mode, monkeypatch):
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert connect.auth_mode(embedded) == mode == os.environ["RAY_AUTH_MODE"]
