"""Secrets never reach workers: with API keys in the driver's environment, an embedded
campaign's trial workers and the sandboxed method's process do not see them, the agent actor
gets the Anthropic key (through the object store) and uses it, and Ray's logs never hold it.
The KubeRay manifest mounts the key on the head only, as a file."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import ray
import yaml

from aar_ray.config import CampaignConfig, ClaudeConfig
from aar_ray.lab import NAMESPACE
from aar_ray.lab.agent import ResearcherActor
from aar_ray.lab.campaign import init_ray, is_secret, secrets
from aar_ray.lab.trials import execute_trial
from aar_ray.testing.fake_anthropic import FakeAnthropic, text_reply

ROOT = Path(__file__).resolve().parents[1]
ANTHROPIC, WANDB, OTHER = ("sk-ant-test-" + "K3Y" * 8, "wandb-" + "W4NDB" * 6,
                           "svc-" + "T0K3N" * 6)
ENV_DUMP = '''import os
from aar_ray.w2s.methods import Method
raise RuntimeError("ENVDUMP " + repr(sorted(os.environ.items())))
'''


def test_which_variables_are_secrets():
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_FILE", "WANDB_API_KEY", "HF_TOKEN",
                 "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD"):
        assert is_secret(name), name
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "TOKENIZERS_PARALLELISM", "WANDB_MODE",
                 "PATH", "HF_HUB_OFFLINE"):
        assert not is_secret(name), name


@ray.remote
def _worker_env() -> dict[str, str]:
    return dict(os.environ)


@ray.remote
class _Stub:
    """Stands in for the forum, scorer and queue an agent actor looks up by name."""

    def ping(self) -> bool:
        return True


@pytest.mark.ray
def test_embedded_workers_and_sandbox_never_see_the_drivers_keys(small_setting, fast_student,
                                                                 cache_dir, tmp_path,
                                                                 monkeypatch):
    key_file = tmp_path / "anthropic-key"  # the KubeRay route: a file named by NAME_FILE
    key_file.write_text(ANTHROPIC + "\n")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("WANDB_API_KEY", WANDB)
    monkeypatch.setenv("MY_SERVICE_TOKEN", OTHER)
    if ray.is_initialized():
        ray.shutdown()
    campaign = tmp_path / "campaign"
    (campaign / "agents").mkdir(parents=True)
    with FakeAnthropic([text_reply("Reading up first.")]) as fake:
        cfg = CampaignConfig(setting=small_setting, student=fast_student, cache_dir=cache_dir,
                             root=str(tmp_path), brain="claude",
                             claude=ClaudeConfig(base_url=fake.base_url, max_retries=0))
        cfg.budget.steps_per_agent = 1
        assert init_ray(cfg)
        try:
            assert os.environ["WANDB_API_KEY"] == WANDB  # the driver keeps its own
            # a trial worker
            env = ray.get(_worker_env.remote())
            assert not {ANTHROPIC, WANDB, OTHER, str(key_file)} & set(env.values())
            assert not [k for k in env if is_secret(k)]
            # the sandboxed process of an agent's method, through the queue's own task
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(execute_trial.remote(cfg, str(campaign), "custom:a/dump", {},
                                             ENV_DUMP))
            assert "ENVDUMP" in str(err.value)  # the probe ran ...
            assert not [s for s in (ANTHROPIC, WANDB, OTHER) if s in str(err.value)]
            # the agent actor: the key arrives through the object store and is used
            stubs = [_Stub.options(name=n, namespace=NAMESPACE).remote()  # kept: named
                     for n in ("forum", "scorer", "trials")]  # actors die with their handles
            ray.get([s.ping.remote() for s in stubs])
            agent = ResearcherActor.remote([("agent-0", "anything", 0)], str(campaign), cfg,
                                           secrets("ANTHROPIC_API_KEY"))
            ray.get(agent.run.remote(time.time() + 120))
            (request,) = fake.requests
            assert ANTHROPIC in request["headers"].get("Authorization", "")
            # nothing in Ray's session logs (runtime_env env_vars, for one, are logged)
            session = Path(ray._private.worker._global_node.get_session_dir_path())
            for f in session.rglob("*"):
                if f.is_file() and f.stat().st_size < 50 << 20:
                    data = f.read_bytes()
                    assert not [s for s in (ANTHROPIC, WANDB, OTHER) if s.encode() in data], f
        finally:
            ray.shutdown()


def test_rayjob_mounts_the_key_on_the_head_only_as_a_file():
    doc = yaml.safe_load((ROOT / "k8s" / "rayjob.yaml").read_text())
    spec = doc["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]["template"]["spec"]
    (container,) = head["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "ANTHROPIC_API_KEY" not in env  # an env var is inherited by every Ray worker
    path = Path(env["ANTHROPIC_API_KEY_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "anthropic-api-key" and mount["readOnly"]
    for group in spec["workerGroupSpecs"]:
        text = yaml.safe_dump(group)
        assert "anthropic" not in text.lower() and "secretKeyRef" not in text, group["groupName"]
    assert "API_KEY" not in doc["spec"]["runtimeEnvYAML"]  # Ray logs runtime_env env_vars
