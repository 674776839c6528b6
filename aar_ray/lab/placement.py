"""Where the lab's processes run, and which addresses an embedded Ray listens on.

Loopback: `aar_ray.connect` (`pin_loopback`).

Placement. The same `resources:` keys serve a laptop, the simulated multi-node cluster of the
tests and a GPU cluster: custom resources that the scorer, forum and trial queue (`head`), the
agents' actors (`agent`) and the trial tasks (`trial`) ask for, offered by the nodes that should
host them (`ray start --resources='{"aar_head": 1}'`, or a node type's `resources:` in
cluster.yaml), and `spread`, Ray's SPREAD strategy for agents and trials.
"""
from __future__ import annotations

from typing import Any

from aar_ray.config import CampaignConfig
from aar_ray.connect import LOOPBACK, LOOPBACK_ENV, auth_mode, pin_loopback

__all__ = ["LOOPBACK", "LOOPBACK_ENV", "pin_loopback", "start_embedded", "free_port"]


def start_embedded(cfg: CampaignConfig, namespace: str, runtime_env: dict[str, Any]) -> None:
    """An embedded Ray on 127.0.0.1 only; with `dashboard.enabled`, its dashboard and
    Prometheus endpoint too, whose URLs are printed."""
    import ray

    pin_loopback()
    auth_mode(embedded=True)
    d = cfg.dashboard
    extra: dict[str, Any] = {"include_dashboard": d.enabled}
    if d.enabled:
        extra.update(dashboard_host=LOOPBACK, dashboard_port=d.port or None,
                     _metrics_export_port=d.metrics_port or free_port())
    ctx = ray.init(address="local", namespace=namespace, runtime_env=runtime_env,
                   log_to_driver=False, _node_ip_address=LOOPBACK, **extra)
    if d.enabled:
        print(f"Ray dashboard: http://{ctx.dashboard_url}  (Prometheus metrics: "
              f"http://{LOOPBACK}:{extra['_metrics_export_port']}/metrics)", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _options(resources: dict[str, float], spread: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if resources:
        out["resources"] = dict(resources)
    if spread:
        out["scheduling_strategy"] = "SPREAD"
    return out


def head(cfg: CampaignConfig) -> dict[str, Any]:
    """Ray options of the scorer, the forum and the trial queue: the node that keeps the
    campaign's state (the head of a cluster)."""
    return _options(cfg.resources.head_resources)


def agents(cfg: CampaignConfig) -> dict[str, Any]:
    """Ray options of the agents' actors."""
    return _options(cfg.resources.agent_resources, cfg.resources.spread)


def trials(cfg: CampaignConfig) -> dict[str, Any]:
    """Ray options of a trial task (added to its CPUs and GPUs)."""
    return _options(cfg.resources.trial_resources, cfg.resources.spread)
