"""Offline checks for the cluster manifests: `cluster.yaml` (Ray autoscaler) and `k8s/rayjob.yaml`.

Neither `ray up` nor KubeRay has a dry run, so a typo in a node type otherwise shows up only after
minutes of provisioning, or never (the field is silently ignored). These checks run Ray's own
validation without starting Ray or calling a cloud API, and report each problem as
`<file>: <field.path>: <what is wrong>`.

The shared parts — YAML loading, Ray's private validators, the wording of problems — are in
`manifests.py`.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from aar_ray.cluster_policy import cluster_yaml_problems, rayjob_problems
from aar_ray.manifests import (
    ClusterConfigError,
    RayApiMovedError,
    describe_ray_error,
    describe_schema_error,
    join,
    load_yaml_mapping,
    missing_hint,
    ray_private,
    ray_schema,
)

__all__ = [
    "ClusterConfigError",
    "RayApiMovedError",
    "validate_cluster_yaml",
    "validate_rayjob",
]

RAYJOB_API_VERSION = "ray.io/v1"
RAYJOB_KIND = "RayJob"
# --------------------------------------------------------------------------- cluster.yaml


def _cross_field_problems(config: dict[str, Any]) -> list[str]:
    """Checks the schema cannot express; Ray makes some of them too, with vaguer wording."""
    problems: list[str] = []
    node_types = config.get("available_node_types")
    if not isinstance(node_types, dict):
        return problems
    head = config.get("head_node_type")
    if head is None:
        problems.append("head_node_type: required when available_node_types is set")
    elif head not in node_types:
        names = ", ".join(map(str, node_types))
        problems.append(f"head_node_type: {head!r} is not one of available_node_types ({names})")
    total_min = 0
    for name, node_type in node_types.items():
        lo, hi = node_type.get("min_workers", 0), node_type.get("max_workers")
        total_min += lo
        if hi is not None and lo > hi:
            problems.append(
                f"available_node_types.{name}.min_workers: {lo} is more than max_workers ({hi})"
            )
    global_max = config.get("max_workers")
    if global_max is not None and total_min > global_max:
        problems.append(
            f"max_workers: {global_max} is less than the sum of min_workers ({total_min})"
        )
    return problems


def validate_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Check a Ray autoscaler config offline; return it as Ray would use it (defaults filled in).

    Two layers: the JSON schema Ray ships (catches unknown keys and wrong types anywhere), then
    Ray's own `prepare_config` + `validate_config` (defaults, docker block, worker counts), which
    is what `ray up` runs before it contacts the cloud.
    """
    source, config = load_yaml_mapping(path)

    validator = jsonschema.Draft7Validator(ray_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [line for err in errors for line in describe_schema_error(err)]
    if problems:
        raise ClusterConfigError(source, problems)
    problems = _cross_field_problems(config) + cluster_yaml_problems(config)
    if problems:
        raise ClusterConfigError(source, problems)

    prepare_config = ray_private("ray.autoscaler._private.util", "prepare_config")
    validate_config = ray_private("ray.autoscaler._private.util", "validate_config")
    try:
        prepared = prepare_config(copy.deepcopy(config))
        validate_config(prepared)
    except Exception as e:  # Ray raises ValueError, RuntimeError, AssertionError, KeyError...
        raise ClusterConfigError(source, [f"rejected by Ray: {describe_ray_error(e)}"]) from e
    return prepared


# --------------------------------------------------------------------------- k8s RayJob


_TYPE_NAMES = {dict: "mapping", list: "list", str: "string", int: "integer", bool: "boolean"}


class _Fields:
    """Collects problems while walking a manifest, so one run reports all of them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(self, obj: Any, key: str, kind: type, path: str, required: bool = True) -> Any | None:
        full = join(path, key)
        if not isinstance(obj, dict) or key not in obj:
            if required:
                hint = missing_hint(key, obj) if isinstance(obj, dict) else ""
                self.problems.append(f"{full}: required field missing{hint}")
            return None
        value = obj[key]
        wrong_int = kind is int and isinstance(value, bool)
        if not isinstance(value, kind) or wrong_int:
            self.problems.append(f"{full}: expected {_TYPE_NAMES[kind]}, got {value!r}")
            return None
        return value

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def _check_pod_template(fields: _Fields, group: dict[str, Any], path: str) -> None:
    spec = fields.get(fields.get(group, "template", dict, path), "spec", dict, f"{path}.template")
    containers = fields.get(spec, "containers", list, f"{path}.template.spec")
    if containers is None:
        return
    if not containers:
        fields.add(f"{path}.template.spec.containers: needs at least the Ray container")
    for i, container in enumerate(containers):
        cpath = f"{path}.template.spec.containers[{i}]"
        if not isinstance(container, dict):
            fields.add(f"{cpath}: expected mapping, got {container!r}")
            continue
        fields.get(container, "name", str, cpath)
        fields.get(container, "image", str, cpath)


def _check_worker_group(fields: _Fields, group: Any, path: str) -> str | None:
    if not isinstance(group, dict):
        fields.add(f"{path}: expected mapping, got {group!r}")
        return None
    name = fields.get(group, "groupName", str, path)
    lo = fields.get(group, "minReplicas", int, path)
    hi = fields.get(group, "maxReplicas", int, path)
    replicas = fields.get(group, "replicas", int, path, required=False)
    if lo is not None and lo < 0:
        fields.add(f"{path}.minReplicas: must be >= 0, got {lo}")
    if lo is not None and hi is not None and lo > hi:
        fields.add(f"{path}.minReplicas: {lo} is more than maxReplicas ({hi})")
    if replicas is not None and lo is not None and hi is not None and not lo <= replicas <= hi:
        fields.add(f"{path}.replicas: {replicas} is outside minReplicas..maxReplicas ({lo}..{hi})")
    _check_pod_template(fields, group, path)
    return name


def _check_runtime_env(fields: _Fields, text: str, path: str) -> None:
    try:
        env = yaml.safe_load(text)
    except yaml.YAMLError as e:
        fields.add(f"{path}: invalid YAML: {getattr(e, 'problem', None) or e}")
        return
    if env is None:
        return
    if not isinstance(env, dict):
        fields.add(f"{path}: expected a mapping, got {type(env).__name__}")
        return
    env_vars = fields.get(env, "env_vars", dict, path, required=False) or {}
    for key, value in env_vars.items():
        if not isinstance(value, str):  # Ray rejects non-string env var values at submit time
            fields.add(f"{path}.env_vars.{key}: expected string, got {value!r} (quote it)")


def _rayjob_problems(doc: dict[str, Any]) -> list[str]:
    fields = _Fields()
    api_version = fields.get(doc, "apiVersion", str, "")
    if api_version is not None and api_version != RAYJOB_API_VERSION:
        fields.add(f"apiVersion: expected {RAYJOB_API_VERSION!r}, got {api_version!r}")
    kind = fields.get(doc, "kind", str, "")
    if kind is not None and kind != RAYJOB_KIND:
        fields.add(f"kind: expected {RAYJOB_KIND!r}, got {kind!r}")
    fields.get(fields.get(doc, "metadata", dict, ""), "name", str, "metadata")

    spec = fields.get(doc, "spec", dict, "")
    if spec is None:
        return fields.problems
    entrypoint = fields.get(spec, "entrypoint", str, "spec")
    if entrypoint is not None and not entrypoint.strip():
        fields.add("spec.entrypoint: must not be empty")
    runtime_env = fields.get(spec, "runtimeEnvYAML", str, "spec", required=False)
    if runtime_env is not None:
        _check_runtime_env(fields, runtime_env, "spec.runtimeEnvYAML")
    fields.get(spec, "shutdownAfterJobFinishes", bool, "spec", required=False)
    ttl = fields.get(spec, "ttlSecondsAfterFinished", int, "spec", required=False)
    if ttl is not None and ttl < 0:
        fields.add(f"spec.ttlSecondsAfterFinished: must be >= 0, got {ttl}")

    cluster = fields.get(spec, "rayClusterSpec", dict, "spec")
    if cluster is None:
        return fields.problems
    cpath = "spec.rayClusterSpec"
    head = fields.get(cluster, "headGroupSpec", dict, cpath)
    if head is not None:
        _check_pod_template(fields, head, f"{cpath}.headGroupSpec")
    groups = fields.get(cluster, "workerGroupSpecs", list, cpath, required=False) or []
    seen: set[str] = set()
    for i, group in enumerate(groups):
        name = _check_worker_group(fields, group, f"{cpath}.workerGroupSpecs[{i}]")
        if name is not None and name in seen:
            fields.add(f"{cpath}.workerGroupSpecs[{i}].groupName: duplicate group {name!r}")
        seen.add(name or "")
    return fields.problems


def _derive_node_types(ray_cr: dict[str, Any]) -> dict[str, Any]:
    module = "ray.autoscaler._private.kuberay.autoscaling_config"
    derive = ray_private(module, "_derive_autoscaling_config_from_ray_cr")
    validate_config = ray_private("ray.autoscaler._private.util", "validate_config")
    config = derive(copy.deepcopy(ray_cr))
    validate_config(config)  # derive runs it too today; kept in case that changes
    return config["available_node_types"]


def _locate_derive_failure(ray_cr: dict[str, Any]) -> str:
    """Field path of the group Ray cannot convert, found by converting groups one at a time."""
    spec = ray_cr["spec"]
    base = "spec.rayClusterSpec"
    try:
        _derive_node_types({**ray_cr, "spec": {**spec, "workerGroupSpecs": []}})
    except RayApiMovedError:
        raise
    except Exception:
        return f"{base}.headGroupSpec"
    for i, group in enumerate(spec["workerGroupSpecs"]):
        try:
            _derive_node_types({**ray_cr, "spec": {**spec, "workerGroupSpecs": [group]}})
        except RayApiMovedError:
            raise
        except Exception:
            return f"{base}.workerGroupSpecs[{i}]"
    return base


def validate_rayjob(path: str | Path) -> dict[str, Any]:
    """Check a KubeRay RayJob offline; return the autoscaler node types Ray derives from it.

    The structure is checked first (Ray's converter fails on a missing field with a bare
    KeyError), then `rayClusterSpec` goes through the conversion the in-tree autoscaler runs on
    the head pod, followed by `validate_config`. The result maps group name (the head is
    `headgroup`) to `min_workers`, `max_workers` and `resources` ({"CPU", "GPU", "memory"}).
    Not checked: the KubeRay CRD itself (needs a cluster).
    """
    source, doc = load_yaml_mapping(path)
    problems = _rayjob_problems(doc)
    problems += rayjob_problems(doc) if not problems else []
    if problems:
        raise ClusterConfigError(source, problems)

    metadata = doc["metadata"]
    ray_cr = {
        "apiVersion": RAYJOB_API_VERSION,
        "kind": "RayCluster",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace", "default"),
        },
        "spec": {"workerGroupSpecs": [], **doc["spec"]["rayClusterSpec"]},
    }
    try:
        return _derive_node_types(ray_cr)
    except RayApiMovedError:
        raise
    except Exception as e:  # ValueError (no CPU found), bad k8s quantities, schema errors...
        where = _locate_derive_failure(ray_cr)
        raise ClusterConfigError(
            source, [f"{where}: rejected by Ray: {describe_ray_error(e)}"]
        ) from e


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m aar_ray.cluster_config cluster.yaml k8s/rayjob.yaml`: exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="cluster.yaml or RayJob manifests")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        try:
            doc = load_yaml_mapping(path)[1]
            if "apiVersion" in doc or "kind" in doc:  # a Kubernetes manifest
                node_types = validate_rayjob(path)
            else:
                node_types = validate_cluster_yaml(path)["available_node_types"]
        except ClusterConfigError as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        summary = ", ".join(
            f"{name} {t.get('min_workers', 0)}..{t.get('max_workers', 0)} {t.get('resources')}"
            for name, t in node_types.items()
        )
        print(f"{path}: ok ({summary})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
