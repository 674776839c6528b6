"""A Messages API that fails on purpose: the default researcher script, but a share of the
requests answered 429 (rate limited), 529 (overloaded) or so late that the client times out.
The soak benchmark runs one Claude agent against it (`aar_ray/bench/soak.py`)."""
from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from aar_ray.testing.messages import Spec, error_reply
from aar_ray.testing.researcher import researcher_policy

KINDS = ("429", "529", "timeout")


class ChaosPolicy:
    """`FakeAnthropic(ChaosPolicy(rate, timeout_s))`: each request fails with probability
    `rate`, the failure drawn evenly from KINDS; `injected` counts what was served. A timeout
    is an answer delayed `timeout_s` + 1 s, so a client with that timeout gives up first."""

    def __init__(self, rate: float, timeout_s: float, seed: int = 0) -> None:
        self.rate, self.timeout_s = rate, timeout_s
        self.rng = random.Random(seed)
        self.policy = researcher_policy()
        self.injected: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Spec:
        with self.lock:
            kind = self.rng.choice(KINDS) if self.rng.random() < self.rate else None
            if kind:
                self.injected[kind] += 1
        if kind == "timeout":
            return {**self.policy(body), "delay_s": self.timeout_s + 1}
        if kind:
            return error_reply(int(kind), retry_after_ms=None)
        return self.policy(body)
