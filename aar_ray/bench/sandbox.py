"""Bench: what kernel isolation adds to the start-up of one custom-method trial (target ≤ 1 s).

A trivial agent method runs through `run_sandboxed`: with the kernel layers this node offers
and with none (the same fresh exec'd child, cleared environment and audit hook), interleaved,
without torch so the A/B is not drowned in torch's import time (identical in both arms). The
difference of medians, plus the allow-list (computed once per worker process, so only its first
trial pays it), is what isolation adds. One child with torch preloaded gives the whole start-up
of a real trial's child for context."""
from __future__ import annotations

import statistics
import time

from aar_ray.bench import merge_results
from aar_ray.sandbox import kernel, runner
from aar_ray.sandbox.audit_hook import TORCH_PRELOAD, SandboxLimits

RUNS = 5
SOURCE = "def main():\n    return 1\n"


def _once(layers: kernel.Layers, preload: tuple[str, ...]) -> float:
    t0 = time.perf_counter()
    runner.run_sandboxed("aar_ray.sandbox.launcher:run_main", SOURCE, limits=SandboxLimits(
        cpu_seconds=300, preload=preload), timeout_s=900, layers=layers, allow_weak=True)
    return time.perf_counter() - t0


def run() -> tuple[str, list[dict]]:
    layers = kernel.detect()
    t0 = time.perf_counter()
    runner.read_allowlist()
    allowlist = time.perf_counter() - t0
    on, off = [], []
    for _ in range(RUNS):  # interleaved, so load from other processes hits both arms alike
        on.append(_once(layers, ()))
        off.append(_once(kernel.Layers(), ()))
    isolated, bare = statistics.median(on), statistics.median(off)
    added = isolated - bare + allowlist  # worst case: the first trial in a fresh worker
    with_torch = _once(layers, TORCH_PRELOAD)
    merge_results("sandbox", {"isolation_startup_s": round(added, 3),
                              "child_startup_s": round(isolated, 3),
                              "child_startup_torch_s": round(with_torch, 3),
                              "allowlist_once_s": round(allowlist, 3),
                              "layers": layers.describe()})
    return "Sandbox isolation start-up per custom-method trial", [
        {"layers": layers.describe(), "child, isolated (s)": isolated,
         "child, no kernel layers (s)": bare, "allow-list, once per process (s)": allowlist,
         "added by isolation (s)": added, "target (s)": "≤ 1",
         "child with torch preloaded, isolated (s)": with_torch}]
