"""Bench: what the sandbox costs a custom method (targets: a no-op call ≤ 0.3 s, a custom-method
trial ≤ 1.3x the same method built in).

`noop_call_s`: a trivial agent module through `run_sandboxed` with the layers this node offers
(bubblewrap where user namespaces work: a fork of the warm server); `cold_start_s`: the first
such call of a process, which starts the server; `noop_call_fallback_s`: the same under the
Landlock + seccomp fallback (a fresh interpreter per call). `custom_over_builtin`: the
built-in `vanilla` written as an agent's method, through `custom_methods.run_any`, over the
built-in through the same function, on the same synthetic inputs (head mode, so no model or
data set is needed). Medians of interleaved runs."""
from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from aar_ray.bench import merge_results
from aar_ray.sandbox import custom_methods, kernel, pool, runner
from aar_ray.sandbox.audit_hook import SandboxLimits

RUNS = 5
NOOP = "def main():\n    return 1\n"
VANILLA = custom_methods.TEMPLATE.replace("keep: float", "unused: float")


def _noop(layers: kernel.Layers) -> float:
    t0 = time.perf_counter()
    runner.run_sandboxed("aar_ray.sandbox.launcher:run_main", NOOP, limits=SandboxLimits(
        cpu_seconds=300), timeout_s=900, layers=layers)
    return time.perf_counter() - t0


def _inputs(seed: int):
    from aar_ray.w2s.student import StudentInputs

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1600, 384)).astype(np.float32)
    weak = rng.dirichlet([1, 1], 1200).astype(np.float32)
    return StudentInputs(seed, 2, weak, x_train=x[:1200], x_test=x[1200:])


def _trial(cfg, method: str, source: str | None, tmp: str) -> float:
    t0 = time.perf_counter()
    custom_methods.run_any(cfg, tmp, method, {}, [_inputs(0), _inputs(1)], source=source)
    return time.perf_counter() - t0


def run() -> tuple[str, list[dict]]:
    import tempfile

    from aar_ray.config import CampaignConfig

    layers = kernel.detect()
    fallback = dataclasses.replace(layers, bwrap=False)
    pool.close_all()
    cold = _noop(layers)
    on, off = [], []
    for _ in range(RUNS):  # interleaved, so load from other processes hits both arms alike
        on.append(_noop(layers))
        off.append(_noop(fallback))
    cfg = CampaignConfig()
    custom, builtin = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(RUNS):
            custom.append(_trial(cfg, "custom:bench/my_method", VANILLA, tmp))
            builtin.append(_trial(cfg, "vanilla", None, tmp))
    noop, noop_fb = statistics.median(on), statistics.median(off)
    ratio = statistics.median(custom) / statistics.median(builtin)
    merge_results("sandbox", {"noop_call_s": round(noop, 3), "cold_start_s": round(cold, 3),
                              "noop_call_fallback_s": round(noop_fb, 3),
                              "custom_trial_s": round(statistics.median(custom), 3),
                              "builtin_trial_s": round(statistics.median(builtin), 3),
                              "custom_over_builtin": round(ratio, 2),
                              "layers": layers.describe(),
                              "fallback_layers": fallback.describe()})
    return "Sandbox cost per custom-method call and trial", [
        {"layers": layers.describe(), "no-op call (s)": noop, "target (s)": "≤ 0.3",
         "first call, starts the server (s)": cold,
         "no-op call, fallback (s)": noop_fb, "custom / built-in trial": ratio,
         "target ratio": "≤ 1.3"}]
