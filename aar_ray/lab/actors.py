"""The lab's long-lived actors as Ray wrappers around plain classes (tested without Ray).

All restart on failure (`max_restarts=-1`) and retry in-flight calls (`max_task_retries=-1`);
their state is in SQLite, so a restart loses nothing."""
from __future__ import annotations

import time

import ray

from aar_ray.lab import ACTOR_OPTIONS, NAMESPACE
from aar_ray.lab.forum import Forum
from aar_ray.lab.scorer import Scorer
from aar_ray.lab.trials import TrialQueueActor

ScorerActor = ray.remote(**ACTOR_OPTIONS, max_concurrency=4)(Scorer)


@ray.remote(**ACTOR_OPTIONS)
class ForumActor(Forum):
    def __init__(self, campaign_dir: str) -> None:
        scorer = ray.get_actor("scorer", namespace=NAMESPACE)
        super().__init__(campaign_dir, lambda ids: ray.get(scorer.trial_scores.remote(ids)))


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
