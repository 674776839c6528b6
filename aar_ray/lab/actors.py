"""The lab's long-lived actors as Ray wrappers around plain classes (tested without Ray).

All restart on failure (`max_restarts=-1`) and retry in-flight calls (`max_task_retries=-1`);
their state is in SQLite, so a restart loses nothing. Constructor arguments are plain values
(paths, configs): an actor finds the others by name, because an actor handle passed as an
argument lives in the object store, from which a restarted actor may fail to get it back
(ray-project/ray#53727; Ray logs an ERROR for every such actor)."""
from __future__ import annotations

import time
from typing import Any

import ray

from aar_ray import train
from aar_ray.config import CampaignConfig
from aar_ray.lab import ACTOR_OPTIONS, NAMESPACE
from aar_ray.lab.forum import Forum
from aar_ray.lab.scorer import Scorer
from aar_ray.lab.trials import TrialQueue
from aar_ray.observe.operations import note_restart


@ray.remote(**ACTOR_OPTIONS, max_concurrency=4)
class ScorerActor(Scorer):
    def __init__(self, campaign_dir: str, cfg: CampaignConfig) -> None:
        from aar_ray.w2s import features  # pyarrow: the scorer's process only (see scorer.py)

        train.install()  # teacher and ceiling may be fine-tuned (setting.teacher finetune)
        self._embedding: dict[str, Any] = {}  # the texts being embedded now, for `progress`
        features.report_progress(
            lambda model, done, total: self._embedding.update(model=model, done=done,
                                                              total=total))
        super().__init__(campaign_dir, cfg)
        note_restart(campaign_dir, "scorer")

    def progress(self) -> dict[str, Any]:
        """How far the embedding in progress is: {model, done, total}, {} when none ran."""
        return dict(self._embedding)


@ray.remote(**ACTOR_OPTIONS, max_concurrency=8)  # reads are served from its index, side by side
class ForumActor(Forum):
    """Reads the scorer's records (read-only), never calls the scorer actor."""

    def __init__(self, campaign_dir: str) -> None:
        super().__init__(campaign_dir)
        note_restart(campaign_dir, "forum")


@ray.remote(**ACTOR_OPTIONS, max_concurrency=1000)
class TrialQueueActor(TrialQueue):
    def __init__(self, campaign_dir: str, cfg: CampaignConfig,
                 secrets: dict[str, Any] | None = None, scorer: str = "scorer") -> None:
        super().__init__(campaign_dir, cfg, ray.get_actor(scorer, namespace=NAMESPACE), secrets)
        note_restart(campaign_dir, "trials")


def create(name: str, cls, *args, **options):
    """A named actor in the lab namespace, replacing one left over from a killed driver."""
    for _ in range(50):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            time.sleep(0.1)  # the name is released asynchronously
        except ValueError:
            return cls.options(name=name, namespace=NAMESPACE, **options).remote(*args)
    raise RuntimeError(f"actor {name!r} in namespace {NAMESPACE!r} would not go away")


__all__ = ["ScorerActor", "ForumActor", "TrialQueueActor", "create"]
