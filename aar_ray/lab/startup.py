"""The campaign's start-up as the user sees it: while the scorer prepares (the task, then per
seed the teacher and the ceiling, embedding every text it has not cached yet), a progress bar
with counts, rate and ETA, fed by the scorer's `progress`."""
from __future__ import annotations

import sys
from typing import Any

import ray
from tqdm import tqdm


def prepare(scorer: Any, show: bool = True) -> dict[str, Any]:
    """`scorer.prepare()`, showing the embedding's progress when there is any (a first run;
    with warm caches nothing is embedded and nothing is shown)."""
    ref = scorer.prepare.remote()
    bar, model = None, None
    try:
        while not ray.wait([ref], timeout=1.0)[0]:
            p = ray.get(scorer.progress.remote()) if show else {}
            if not p:
                continue
            if bar is None or (p["model"], p["total"]) != (model, bar.total) or p["done"] < bar.n:
                if bar is not None:
                    bar.close()
                model = p["model"]
                # a log file gets a line every 15 s rather than a redraw every second
                bar = tqdm(total=p["total"], unit="text", file=sys.stderr,
                           desc=f"scorer: embedding texts with {model} (cached after)",
                           mininterval=1 if sys.stderr.isatty() else 15)
            bar.update(p["done"] - bar.n)
    finally:
        if bar is not None:
            bar.close()
    return ray.get(ref)
