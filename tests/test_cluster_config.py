"""The cluster manifests pass Ray's offline checks, and broken copies fail naming the field.

Nothing here starts Ray: only Ray's config schema and conversion functions are used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from aar_ray.cluster_config import (
    ClusterConfigError,
    RayApiMovedError,
    validate_cluster_yaml,
    validate_rayjob,
)
from aar_ray.manifests import ray_private

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "k8s" / "rayjob.yaml"


@pytest.fixture(autouse=True)
def _no_ray_started():
    yield
    assert not ray.is_initialized(), "config checks must not start Ray"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    out = tmp_path / name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _gpu_node_types(node_types: dict[str, Any]) -> dict[str, Any]:
    return {n: t for n, t in node_types.items() if t["resources"].get("GPU", 0) > 0}


# --------------------------------------------------------------------------- valid manifests


def test_cluster_yaml_is_valid():
    config = validate_cluster_yaml(CLUSTER_YAML)
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 8, "aar_head": 1}
    assert head["node_config"]["InstanceType"] == "m5.2xlarge"

    (gpu,) = _gpu_node_types(node_types).values()
    assert gpu["resources"] == {"CPU": 8, "GPU": 1, "aar_worker": 1}
    assert (gpu["min_workers"], gpu["max_workers"]) == (0, 4)
    assert gpu["node_config"]["InstanceType"] == "g5.2xlarge"
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"


def test_cluster_yaml_start_commands_set_auth_mode_and_metrics_port():
    config = validate_cluster_yaml(CLUSTER_YAML)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert "RAY_AUTH_MODE=" in start, key
        assert "--metrics-export-port=8080" in start, key


def test_rayjob_is_valid_and_derives_gpu_group():
    node_types = validate_rayjob(RAYJOB_YAML)
    assert "headgroup" in node_types
    assert node_types["headgroup"]["resources"].get("GPU") is None

    (gpu,) = _gpu_node_types(node_types).values()
    assert gpu["resources"]["GPU"] == 1
    assert (gpu["min_workers"], gpu["max_workers"]) == (0, 4)


def test_rayjob_runs_the_gpu_campaign():
    doc = _load(RAYJOB_YAML)
    assert doc["spec"]["entrypoint"].startswith(
        "python jobs/campaign.py --config jobs/configs/gpu_qwen.yaml"
    )
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    assert "WANDB_MODE" in runtime_env["env_vars"]
    # The API key comes from a Secret on the head (tests/test_secrets.py), never from the CR's
    # runtime env text.
    assert "ANTHROPIC_API_KEY" not in doc["spec"]["runtimeEnvYAML"]


def test_manifests_name_the_installed_ray_version():
    """A Ray upgrade must update both manifests: mismatched versions cannot join a cluster."""
    image = _load(CLUSTER_YAML)["docker"]["image"]
    assert f":{ray.__version__}-" in image
    assert _load(RAYJOB_YAML)["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__


# --------------------------------------------------------------------------- cluster.yaml errors


def test_cluster_yaml_typo_key_is_rejected(tmp_path):
    doc = _load(CLUSTER_YAML)
    gpu = doc["available_node_types"]["gpu_worker"]
    gpu["min_worker"] = gpu.pop("min_workers")
    with pytest.raises(ClusterConfigError) as info:
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))
    message = str(info.value)
    assert "cluster.yaml: available_node_types.gpu_worker.min_worker: unexpected field" in message
    assert "min_workers" in message  # the suggestion
    assert "Traceback" not in message


def test_cluster_yaml_non_integer_resource_is_rejected(tmp_path):
    doc = _load(CLUSTER_YAML)
    doc["available_node_types"]["head"]["resources"]["CPU"] = "eight"
    with pytest.raises(ClusterConfigError) as info:
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))
    assert "available_node_types.head.resources.CPU" in str(info.value)
    assert "'eight'" in str(info.value)


def test_cluster_yaml_reports_every_problem(tmp_path):
    doc = _load(CLUSTER_YAML)
    doc["available_node_types"]["gpu_worker"]["min_worker"] = 0
    doc["available_node_types"]["head"]["resources"]["CPU"] = "eight"
    with pytest.raises(ClusterConfigError) as info:
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))
    assert len(info.value.problems) == 2


def test_cluster_yaml_unknown_head_node_type_is_rejected(tmp_path):
    doc = _load(CLUSTER_YAML)
    doc["head_node_type"] = "hed"
    with pytest.raises(ClusterConfigError, match=r"head_node_type: 'hed' is not one of"):
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))


def test_cluster_yaml_min_above_max_is_rejected(tmp_path):
    doc = _load(CLUSTER_YAML)
    doc["available_node_types"]["gpu_worker"]["min_workers"] = 5
    with pytest.raises(ClusterConfigError, match=r"gpu_worker\.min_workers: 5 is more than"):
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))


def test_cluster_yaml_missing_provider_is_rejected(tmp_path):
    doc = _load(CLUSTER_YAML)
    del doc["provider"]
    with pytest.raises(ClusterConfigError, match=r"provider: required field missing"):
        validate_cluster_yaml(_write(tmp_path, "cluster.yaml", doc))


def test_duplicate_yaml_key_is_rejected(tmp_path):
    text = CLUSTER_YAML.read_text().replace(
        "cluster_name: aar-ray\n", "cluster_name: aar-ray\ncluster_name: other\n", 1
    )
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ClusterConfigError, match=r"duplicate key 'cluster_name'"):
        validate_cluster_yaml(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ClusterConfigError, match=r"cannot read file"):
        validate_cluster_yaml(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- RayJob errors


def test_rayjob_without_cluster_spec_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    del doc["spec"]["rayClusterSpec"]
    with pytest.raises(ClusterConfigError) as info:
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))
    assert "rayjob.yaml: spec.rayClusterSpec: required field missing" in str(info.value)


def test_rayjob_wrong_api_version_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    doc["apiVersion"] = "ray.io/v1alpha1"
    with pytest.raises(ClusterConfigError) as info:
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))
    assert "apiVersion: expected 'ray.io/v1', got 'ray.io/v1alpha1'" in str(info.value)


def test_rayjob_wrong_kind_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    doc["kind"] = "RayCluster"
    with pytest.raises(ClusterConfigError, match=r"kind: expected 'RayJob'"):
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))


def test_rayjob_misspelled_replica_field_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["minReplica"] = group.pop("minReplicas")
    with pytest.raises(ClusterConfigError) as info:
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))
    message = str(info.value)
    assert "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: required field missing" in message
    assert "'minReplica'" in message


def test_rayjob_replicas_out_of_range_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 9
    with pytest.raises(ClusterConfigError, match=r"workerGroupSpecs\[0\]\.replicas: 9 is outside"):
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))


def test_rayjob_bad_quantity_names_the_group(tmp_path):
    doc = _load(RAYJOB_YAML)
    container = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"
    ][0]
    container["resources"]["limits"]["cpu"] = "six"
    container["resources"]["requests"]["cpu"] = "six"
    with pytest.raises(ClusterConfigError) as info:
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))
    assert "spec.rayClusterSpec.workerGroupSpecs[0]: rejected by Ray" in str(info.value)


def test_rayjob_head_without_cpu_names_the_head(tmp_path):
    doc = _load(RAYJOB_YAML)
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    del head["resources"]
    with pytest.raises(ClusterConfigError) as info:
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))
    assert "spec.rayClusterSpec.headGroupSpec: rejected by Ray" in str(info.value)
    assert "CPU" in str(info.value)


def test_rayjob_non_string_env_var_is_rejected(tmp_path):
    doc = _load(RAYJOB_YAML)
    doc["spec"]["runtimeEnvYAML"] = "env_vars:\n  PYTHONUNBUFFERED: 1\n"
    with pytest.raises(ClusterConfigError, match=r"runtimeEnvYAML\.env_vars\.PYTHONUNBUFFERED"):
        validate_rayjob(_write(tmp_path, "rayjob.yaml", doc))


# --------------------------------------------------------------------------- private Ray APIs


def test_moved_private_api_gives_a_clear_error():
    with pytest.raises(RayApiMovedError, match=r"no_such_function is not available in Ray"):
        ray_private("ray.autoscaler._private.util", "no_such_function")
    with pytest.raises(RayApiMovedError, match=r"private Ray API"):
        ray_private("ray.autoscaler._private.no_such_module", "validate_config")


# --------------------------------------------------------------------------- launchability

STORAGE = "/mnt/cluster_storage"


def _makefile_image() -> str:
    """The image name `make image` builds: the one source the manifests must agree with."""
    text = (REPO / "Makefile").read_text()
    version = re.search(r"^RAY_VERSION := (\S+)$", text, re.M).group(1)
    image = re.search(r"^IMAGE \?= (\S+)$", text, re.M).group(1)
    return image.replace("$(RAY_VERSION)", version)


def _pod_specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = doc["spec"]["rayClusterSpec"]
    return {"head": spec["headGroupSpec"]["template"]["spec"],
            **{g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]}}


def test_every_launch_path_runs_the_image_make_builds():
    image = _makefile_image()
    assert image == f"aar-ray:{ray.__version__}-gpu"
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$",
                     (REPO / "Dockerfile").read_text(), re.M)
    assert "--build-arg RAY_VERSION=$(RAY_VERSION)" in (REPO / "Makefile").read_text()
    config = _load(CLUSTER_YAML)
    assert config["docker"]["image"] == image
    assert not any("docker" in t for t in config["available_node_types"].values())
    for group, pod in _pod_specs(_load(RAYJOB_YAML)).items():
        assert {c["image"] for c in pod["containers"]} == {image}, group


def test_both_launch_paths_use_token_auth_and_keep_the_dashboard_private():
    assert _load(RAYJOB_YAML)["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    config = validate_cluster_yaml(CLUSTER_YAML)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert "RAY_AUTH_MODE=token ray start" in start, key
    (head,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head
    assert "ANTHROPIC_API_KEY=" not in CLUSTER_YAML.read_text()  # only a path to a key file


def test_ray_train_storage_is_shared_by_every_node_at_one_path():
    from aar_ray.config import load_campaign

    gpu = load_campaign(REPO / "jobs" / "configs" / "gpu_qwen.yaml")
    assert gpu.finetune.storage_path.startswith(STORAGE + "/")
    # KubeRay: one ReadWriteMany claim, mounted at STORAGE in the head and every worker group
    claim = _load(REPO / "k8s" / "storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for group, pod in _pod_specs(_load(RAYJOB_YAML)).items():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", [])
                  if m["mountPath"] == STORAGE]
        assert len(mounts) == len(pod["containers"]) == 1, group
        pvc = volumes[mounts[0]["name"]]["persistentVolumeClaim"]
        assert pvc["claimName"] == claim["metadata"]["name"], group
    # cluster.yaml: mounted on every host before its container starts, and into every container
    config = _load(CLUSTER_YAML)
    assert any(f" {STORAGE}" in c and "mount " in c for c in config["initialization_commands"])
    assert f"-v {STORAGE}:{STORAGE}" in config["docker"]["run_options"]
    assert not any("initialization_commands" in t or "docker" in t
                   for t in config["available_node_types"].values())
