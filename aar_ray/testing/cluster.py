"""A multi-node Ray cluster on one machine, for tests and benchmarks: Ray's own
`ray.cluster_utils.Cluster`, a head and worker nodes (each its own raylet and object store),
every one on 127.0.0.1, offering the custom resources that the placement keys of
`resources:` ask for, exactly as the nodes of a real cluster would (docs/scale.md)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aar_ray.config import ResourcesConfig
from aar_ray.lab.placement import LOOPBACK, pin_loopback

HEAD, WORKER = "aar_head", "aar_worker"
# a node killed without warning is declared dead after about 3 s instead of Ray's 30 s
FAST_FAILURE_DETECTION = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                          "health_check_failure_threshold": 3}


def place_on_cluster(res: ResourcesConfig) -> None:
    """The placement a cluster made by `local_cluster` is for: the scorer, forum and queue on
    the head, agents and trials spread over the workers."""
    res.head_resources = {HEAD: 0.001}
    res.agent_resources = {WORKER: 0.001}
    res.trial_resources = {WORKER: 0.001}
    res.spread = True


@contextmanager
def local_cluster(workers: int = 2, cpus_per_worker: float = 1, head_cpus: float = 0,
                  object_store_mb: int = 200) -> Iterator:
    """A head (no CPUs by default: only the lab's zero-CPU actors live there) and `workers`
    worker nodes; yields the `Cluster` (its `.address` for `ray.init`, `remove_node` to lose a
    node). Everything it started is stopped on exit; never `ray stop`."""
    pin_loopback()
    from ray.cluster_utils import Cluster

    temp = Path("/tmp") / f"aar-mn-{os.getpid()}"  # short: Ray's socket paths have a limit
    cluster = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": LOOPBACK, "num_cpus": head_cpus, "resources": {HEAD: 1},
        "include_dashboard": False, "temp_dir": str(temp),
        "object_store_memory": object_store_mb << 20, "_system_config": FAST_FAILURE_DETECTION})
    try:
        for _ in range(workers):
            cluster.add_node(node_ip_address=LOOPBACK, num_cpus=cpus_per_worker,
                             resources={WORKER: 1}, object_store_memory=object_store_mb << 20)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
