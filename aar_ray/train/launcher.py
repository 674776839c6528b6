"""One `FitJob` as one Ray Train `TorchTrainer` run (about 25 s of fixed overhead on CPU).

`train_loop` runs on every worker; rank 0 reports its predictions and the trained weights as the
run's checkpoint, which this driver side reads back.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from aar_ray.config import FinetuneConfig
from aar_ray.connect import auth_mode
from aar_ray.w2s.finetune import (
    FitJob,
    FitResult,
    Worker,
    loop_config,
    read_predictions,
    train_loop,
)

START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def ensure_ray(cfg: FinetuneConfig) -> None:
    """Ray is the caller's to start; as a fallback, start a local instance. Never a bare
    `ray.init()`: that joins whatever cluster already runs on this machine."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"include_dashboard": False}
    auth_mode(embedded=address == "local")
    if address == "local":  # a private instance, reachable from this machine only
        kwargs.update(num_cpus=max(os.cpu_count() or 1, math.ceil(cfg.cpus_per_worker)),
                      _node_ip_address="127.0.0.1")
    ray.init(address=address, **kwargs)


def _report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
    checkpoint = None if checkpoint_dir is None else ray.train.Checkpoint.from_directory(
        str(checkpoint_dir))
    ray.train.report(metrics, checkpoint=checkpoint)


def _train_func(config: dict[str, Any]) -> None:
    import ray.train.torch

    ctx = ray.train.get_context()
    train_loop(config, Worker(ctx.get_world_rank(), ctx.get_world_size(),
                              ray.train.torch.get_device(), ray.train.torch.prepare_model,
                              _report))


def fit(job: FitJob) -> FitResult:
    cfg = job.cfg
    ensure_ray(cfg)
    trainer = TorchTrainer(
        _train_func, train_loop_config=loop_config(job),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=job.name, storage_path=cfg.storage_path or str(_default_storage()),
            failure_config=ray.train.FailureConfig(max_failures=0, controller_failure_limit=0)))
    # read by the driver and passed on to the controller: without it, workers that cannot be
    # placed (workers > CPUs) make Ray Train retry forever
    old = os.environ.get(START_TIMEOUT_ENV)
    os.environ[START_TIMEOUT_ENV] = str(cfg.start_timeout_s)
    try:
        result = trainer.fit()
    except ray.train.ControllerError as e:
        total, free = (_cpu_gpu(r) for r in (ray.cluster_resources(), ray.available_resources()))
        raise RuntimeError(
            f"Ray Train could not start {cfg.num_workers} worker(s) x {cfg.cpus_per_worker} "
            f"CPU{' + 1 GPU' if cfg.use_gpu else ''} within {cfg.start_timeout_s} s "
            f"(finetune.start_timeout_s): the cluster has {total}, {free} free") from e
    finally:
        if old is None:
            os.environ.pop(START_TIMEOUT_ENV, None)
        else:
            os.environ[START_TIMEOUT_ENV] = old
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {job.name} reported no checkpoint")
    with result.checkpoint.as_directory() as d:
        probs = read_predictions(d)
    return FitResult(probs, dict(result.metrics or {}), result.checkpoint.path)


def _cpu_gpu(resources: dict[str, float]) -> dict[str, float]:
    return {k: resources.get(k, 0.0) for k in ("CPU", "GPU")}


def _default_storage() -> Path:
    from aar_ray.w2s.features import default_cache_dir

    return default_cache_dir() / "ray_results"
