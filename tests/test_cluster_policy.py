"""`python -m aar_ray.cluster_config` enforces what docs/clusters.md promises: each insecure or
incomplete edit of the shipped manifests is an error naming the field, and the shipped ones pass."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from aar_ray.cluster_config import main

REPO = Path(__file__).resolve().parents[1]
RAYJOB, CLUSTER = REPO / "k8s" / "rayjob.yaml", REPO / "cluster.yaml"


def _edited(tmp_path, src: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text, old
    out = tmp_path / src.name
    out.write_text(text.replace(old, new, 1))
    return out


def test_the_shipped_manifests_pass(capsys):
    assert main([str(CLUSTER), str(RAYJOB)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("src, old, new, field", [
    (RAYJOB, "authOptions:", "authOptionz:", r"spec.rayClusterSpec.authOptionz: unknown field "
                                              r"\(did you mean 'authOptions'\?\)"),
    (RAYJOB, "mode: token", "mode: disabled", "authOptions.mode: must be token"),
    (RAYJOB, "activeDeadlineSeconds: 57600", "", "spec.activeDeadlineSeconds"),
    (RAYJOB, "    backoffLimit: 2", "", "spec.submitterConfig.backoffLimit"),
    (RAYJOB, "- {name: ANTHROPIC_API_KEY_FILE, value: /var/run/secrets/aar/anthropic/api-key}",
     "- {name: ANTHROPIC_API_KEY, value: sk-plain}", "env.ANTHROPIC_API_KEY: a credential"),
    (RAYJOB, "    env_vars:\n", "    env_vars:\n      WANDB_API_KEY: abc\n",
     "runtimeEnvYAML.env_vars.WANDB_API_KEY"),
    (RAYJOB, """          resources: '"{\\"aar_worker\\": 1}"'""", "          {}",
     r"workerGroupSpecs\[0\].rayStartParams.resources: needs 'aar_worker'"),
    (RAYJOB, "                volumeMounts:\n                  - {name: cluster-storage, "
             "mountPath: /mnt/cluster_storage}\n", "",
     r"workerGroupSpecs\[0\].template.spec.containers\[0\].volumeMounts: needs the shared"),
    (RAYJOB, "    headGroupSpec:\n", "    headGroupSpec:\n      serviceType: LoadBalancer\n",
     "serviceType: LoadBalancer publishes the dashboard"),
    (CLUSTER, "RAY_AUTH_MODE=token ray start --head", "ray start --head",
     "head_start_ray_commands: every `ray start` needs RAY_AUTH_MODE=token"),
    (CLUSTER, "RAY_AUTH_MODE=token ray start --address", "ray start --address",
     "worker_start_ray_commands: every `ray start` needs RAY_AUTH_MODE=token"),
    (CLUSTER, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0",
     "head_start_ray_commands: --dashboard-host=0.0.0.0 exposes the dashboard"),
    (CLUSTER, "-e ANTHROPIC_API_KEY_FILE=/home/ray/.aar/anthropic_api_key",
     "-e ANTHROPIC_API_KEY=sk-in-plain-sight", "docker.head_run_options: ANTHROPIC_API_KEY as"),
    (CLUSTER, "    - -v /mnt/cluster_storage:/mnt/cluster_storage\n", "",
     "docker.run_options: needs `-v /mnt/cluster_storage"),
    (CLUSTER, ', "aar_worker": 1}', "}",
     "available_node_types.gpu_worker.resources: needs 'aar_worker'"),
])
def test_each_insecure_or_incomplete_edit_is_refused_by_field(tmp_path, capsys, src, old, new,
                                                              field):
    assert main([str(_edited(tmp_path, src, old, new))]) == 1
    err = capsys.readouterr().err
    assert re.search(field, err), err


def test_the_image_keeps_the_hf_cache_on_shared_storage():
    env = re.search(r"^ENV (.+)$", (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert "HF_HOME=/mnt/cluster_storage/" in env
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["spec"]["activeDeadlineSeconds"] > 43200  # past the GPU config's wall clock
