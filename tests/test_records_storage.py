"""A campaign's records outlive the job: the GPU config and both manifests put the campaign root
on the shared storage every node mounts, and a long campaign whose root lies inside a Ray job's
unpacked working directory is refused before anything starts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aar_ray.config import CampaignConfig, ConfigError, load_campaign
from aar_ray.lab.campaign import check_root_outlives_job

REPO = Path(__file__).resolve().parents[1]


def _mounts(pod_spec: dict) -> set[str]:
    return {m["mountPath"] for c in pod_spec["containers"] for m in c.get("volumeMounts", [])}


def test_the_gpu_config_and_both_manifests_keep_records_on_shared_storage():
    root = load_campaign(REPO / "jobs" / "configs" / "gpu_qwen.yaml").root
    assert root.startswith("/mnt/cluster_storage/"), root
    job = yaml.safe_load((REPO / "k8s" / "rayjob.yaml").read_text())
    assert f"--root {root}" in job["spec"]["entrypoint"]  # the job says so itself
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:  # the head writes the records; every group sees the same storage
        assert any(root.startswith(m + "/") for m in _mounts(pod)), pod["containers"][0]["name"]
    docker = yaml.safe_load((REPO / "cluster.yaml").read_text())["docker"]
    mounted = [o.split()[-1].split(":")[1] for o in docker["run_options"] if o.startswith("-v ")]
    assert any(root.startswith(m + "/") for m in mounted), mounted


@pytest.fixture
def job_dir(tmp_path) -> Path:
    d = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    d.mkdir(parents=True)
    return d


def test_a_long_campaign_rooted_in_the_job_dir_is_refused(job_dir):
    cfg = CampaignConfig(brain="claude")
    with pytest.raises(ConfigError, match="root: 'campaigns' is inside the job's working dir"):
        check_root_outlives_job(cfg, job_dir)
    cfg = CampaignConfig()
    cfg.budget.wall_clock_s = 43200
    with pytest.raises(ConfigError, match="root"):
        check_root_outlives_job(cfg, job_dir)


def test_shared_roots_short_campaigns_and_local_runs_are_allowed(job_dir, tmp_path):
    check_root_outlives_job(CampaignConfig(brain="claude", root="/mnt/cluster_storage/c"), job_dir)
    short = CampaignConfig()  # offline, no hour-long exploration: the integration job's case
    short.budget.wall_clock_s = 900
    check_root_outlives_job(short, job_dir)
    check_root_outlives_job(CampaignConfig(brain="claude"), tmp_path)  # not a job's dir
