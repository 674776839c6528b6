"""What docs/clusters.md promises about a cluster, enforced on the manifests themselves: token
auth, no public dashboard, the Anthropic key only as a mounted secret (a file path in
`ANTHROPIC_API_KEY_FILE`, never a value in an env var, which the raylet and every worker would
inherit), the shared storage on every node group, the placement resources `aar_head` /
`aar_worker` (docs/scale.md) on the node groups, and for a RayJob a deadline and a submitter
backoff limit. Each problem is `<field.path>: <what is wrong>`; `aar_ray.cluster_config` runs
these after Ray's own validation.
"""
from __future__ import annotations

import json
import re
from typing import Any

from aar_ray.manifests import typo_hint

HEAD_RESOURCE, WORKER_RESOURCE = "aar_head", "aar_worker"
STORAGE = "/mnt/cluster_storage"
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # where a `ray start` dashboard may listen
SECRET = re.compile(r"(^|_)(API_KEY|TOKEN|SECRET|PASSWORD)$")  # a variable holding a credential
# the fields of KubeRay v1 (1.5) a RayJob spec and its rayClusterSpec may have: a typo such as
# `authOptionz` is otherwise dropped silently by the API server, and with it token auth
RAYJOB_SPEC_FIELDS = ("activeDeadlineSeconds", "backoffLimit", "clusterSelector",
                      "deletionStrategy", "entrypoint", "entrypointNumCpus", "entrypointNumGpus",
                      "entrypointResources", "jobId", "managedBy", "metadata", "rayClusterSpec",
                      "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode",
                      "submitterConfig", "submitterPodTemplate", "suspend",
                      "ttlSecondsAfterFinished")
RAYCLUSTER_SPEC_FIELDS = ("authOptions", "autoscalerOptions", "enableInTreeAutoscaling",
                          "gcsFaultToleranceOptions", "headGroupSpec", "headServiceAnnotations",
                          "managedBy", "rayVersion", "suspend", "upgradeStrategy",
                          "workerGroupSpecs")


def _flag(command: str, name: str) -> str | None:
    m = re.search(rf"--{name}[= ](\S+)", command)
    return m.group(1) if m else None


def cluster_yaml_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config.get(key) or [] if "ray start" in c]
        if not starts or not all("RAY_AUTH_MODE=token ray start" in c for c in starts):
            problems.append(f"{key}: every `ray start` needs RAY_AUTH_MODE=token (token auth)")
        for c in starts:
            host = _flag(c, "dashboard-host")
            if host is not None and host not in LOCAL_HOSTS:
                problems.append(f"{key}: --dashboard-host={host} exposes the dashboard and the "
                                "Jobs API; keep 127.0.0.1 (reach it with `ray dashboard`)")
    docker = config.get("docker") or {}
    for key in ("run_options", "head_run_options", "worker_run_options"):
        for opt in docker.get(key) or []:
            m = re.match(r"(?:-e|--env)[= ]([A-Z0-9_]+)=", opt)
            if m and SECRET.search(m.group(1)):
                problems.append(f"docker.{key}: {m.group(1)} as an env var; mount the secret "
                                "as a file and pass its path in <NAME>_FILE")
    if not any(f"-v {STORAGE}:{STORAGE}" in o for o in docker.get("run_options") or []):
        problems.append(f"docker.run_options: needs `-v {STORAGE}:{STORAGE}` (shared storage "
                        "on every node)")
    head = config.get("head_node_type")
    for name, node in (config.get("available_node_types") or {}).items():
        want = HEAD_RESOURCE if name == head else WORKER_RESOURCE
        if want not in (node.get("resources") or {}):
            problems.append(f"available_node_types.{name}.resources: needs {want!r} (placement, "
                            "docs/scale.md)")
    return problems


def _pod(group: dict[str, Any]) -> dict[str, Any]:
    return (group.get("template") or {}).get("spec") or {}


def _group_problems(group: dict[str, Any], path: str, want: str) -> list[str]:
    problems = []
    pod = _pod(group)
    claims = {v["name"] for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v}
    for i, c in enumerate(pod.get("containers") or []):
        cpath = f"{path}.template.spec.containers[{i}]"
        for e in c.get("env") or []:
            if SECRET.search(str(e.get("name", ""))):
                problems.append(f"{cpath}.env.{e.get('name')}: a credential in an env var; "
                                "mount the Secret as a file and pass its path in <NAME>_FILE")
        if i == 0 and not any(m.get("name") in claims and m.get("mountPath") == STORAGE
                              for m in c.get("volumeMounts") or []):
            problems.append(f"{cpath}.volumeMounts: needs the shared storage claim at {STORAGE}")
    try:
        offered = json.loads(json.loads((group.get("rayStartParams") or {}).get("resources",
                                                                              '"{}"')))
    except (TypeError, ValueError):
        offered = {}
    if want not in offered:
        problems.append(f"{path}.rayStartParams.resources: needs {want!r} (placement, "
                        "docs/scale.md), as '\"{\\\"" + want + "\\\": 1}\"'")
    return problems


def rayjob_problems(doc: dict[str, Any]) -> list[str]:
    spec = doc.get("spec") or {}
    cluster = spec.get("rayClusterSpec") or {}
    problems = [f"spec.{k}: unknown field{typo_hint(k, RAYJOB_SPEC_FIELDS)}"
                for k in spec if k not in RAYJOB_SPEC_FIELDS]
    problems += [f"spec.rayClusterSpec.{k}: unknown field{typo_hint(k, RAYCLUSTER_SPEC_FIELDS)}"
                 for k in cluster if k not in RAYCLUSTER_SPEC_FIELDS]
    if (cluster.get("authOptions") or {}).get("mode") != "token":
        problems.append("spec.rayClusterSpec.authOptions.mode: must be token (token auth)")
    deadline = spec.get("activeDeadlineSeconds")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline <= 0:
        problems.append("spec.activeDeadlineSeconds: needs a deadline in seconds (> 0)")
    backoff = (spec.get("submitterConfig") or {}).get("backoffLimit")
    if not isinstance(backoff, int) or isinstance(backoff, bool) or backoff < 0:
        problems.append("spec.submitterConfig.backoffLimit: needs a retry limit (>= 0) for the "
                        "submitter Job")
    env = spec.get("runtimeEnvYAML") or ""
    for name in re.findall(r"^\s+([A-Z0-9_]+):", env, re.M):
        if SECRET.search(name):
            problems.append(f"spec.runtimeEnvYAML.env_vars.{name}: a credential in the CR's "
                            "plain text; mount it as a Secret file")
    head = cluster.get("headGroupSpec") or {}
    if head.get("serviceType") in ("LoadBalancer", "NodePort"):
        problems.append(f"spec.rayClusterSpec.headGroupSpec.serviceType: {head['serviceType']} "
                        "publishes the dashboard; keep ClusterIP (kubectl port-forward)")
    problems += _group_problems(head, "spec.rayClusterSpec.headGroupSpec", HEAD_RESOURCE)
    for i, g in enumerate(cluster.get("workerGroupSpecs") or []):
        problems += _group_problems(g, f"spec.rayClusterSpec.workerGroupSpecs[{i}]",
                                    WORKER_RESOURCE)
    return problems
