"""Reproduce the built-in baselines on the embedded testbed, with uncertainty:

    python jobs/baselines.py [--config jobs/configs/embedded.yaml] [--seeds 5] [--all]

Runs vanilla, confidence_filter and aux_confidence (`--all`: every registered method, or
`--methods ...`) with default parameters on the config's setting and student, seeds 0..N-1,
trusted code in one process (`trial.run_method`), scored on the whole test split, and prints a
Markdown table. PGR is the ratio of mean gains over seeds with its seeds x items 95% CI
(`stats.pgr_ci`); Δ vs vanilla is paired on seeds and items (`stats.paired_compare`) with
Holm-adjusted p over the non-vanilla methods. Features, teachers and ceilings are cached in
the feature cache (~/.cache/aar-ray), so only the first run embeds.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

# the job's working directory holds the package even where it is not pip-installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aar_ray import train  # noqa: E402
from aar_ray.config import CampaignConfig, load_campaign  # noqa: E402
from aar_ray.results import stats  # noqa: E402
from aar_ray.w2s import pgr  # noqa: E402
from aar_ray.w2s.methods import METHODS  # noqa: E402
from aar_ray.w2s.trial import Setting, ceiling, run_method, student_inputs, teacher  # noqa: E402

DEFAULT_METHODS = ["vanilla", "confidence_filter", "aux_confidence"]
CONFIG = Path(__file__).resolve().parent / "configs" / "embedded.yaml"


def run(cfg: CampaignConfig, methods: list[str], seeds: list[int]) -> list[dict]:
    """One row per method: (seeds, n_test) correctness, accuracies, PGR with CI, Δ vs vanilla."""
    s = Setting.load(cfg.setting, Path(cfg.cache_dir) if cfg.cache_dir else None, cfg.finetune)
    labels = {seed: s.data.labels[s.splits(seed).test] for seed in seeds}
    inputs = {seed: student_inputs(s, seed, cfg.student.mode) for seed in seeds}
    weak = np.stack([teacher(s, seed)["test"].argmax(1) == labels[seed] for seed in seeds])
    ceil = np.stack([ceiling(s, seed, cfg.student, cfg.finetune).argmax(1) == labels[seed]
                     for seed in seeds])
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        t0 = time.time()
        correct = np.stack([run_method(method, {}, inputs[seed], cfg.student,
                                       cfg.finetune).argmax(1) == labels[seed]
                            for seed in seeds])
        rows.append({"method": method, "correct": correct, "seconds": time.time() - t0,
                     "pgr": stats.pgr_ci(correct, weak, ceil, rng=rng),
                     **{k: pgr.mean_se(a.mean(1).tolist())
                        for k, a in (("weak", weak), ("ceiling", ceil), ("transfer", correct))}})
        print(f"{method}: {rows[-1]['seconds']:.1f}s", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["method"] == "vanilla"), None)
    if base is not None:
        others = [r for r in rows if r is not base]
        for r in others:
            r["cmp"] = stats.paired_compare(r["correct"], base["correct"], weak, ceil, rng=rng)
        for r, p in zip(others, stats.holm([r["cmp"].p_value for r in others]), strict=True):
            r["p_holm"] = p
    return rows


def _pm(mean_se: tuple[float | None, float | None], scale: float = 100.0) -> str:
    mean, se = mean_se
    if mean is None:
        return "–"
    return f"{scale * mean:.1f} ± {scale * (se or 0):.1f}"


def _f(x: float, spec: str = ".3f") -> str:
    return format(x, spec) if math.isfinite(x) else ("∞" if x > 0 else "−∞" if x < 0 else "–")


def format_table(rows: list[dict]) -> str:
    out = ["| method | weak acc (%) | ceiling acc (%) | transfer acc (%) | PGR ± SE | 95% CI "
           "| ΔPGR vs vanilla [95% CI] | p (Holm) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["pgr"]
        cmp = r.get("cmp")
        delta = "–" if cmp is None else \
            f"{_f(cmp.delta_pgr, '+.3f')} [{_f(cmp.lo, '+.3f')}, {_f(cmp.hi, '+.3f')}]"
        p = "–" if cmp is None else f"{cmp.p_value:.2g} ({r['p_holm']:.2g})"
        out.append(f"| {r['method']} | {_pm(r['weak'])} | {_pm(r['ceiling'])} | "
                   f"{_pm(r['transfer'])} | {_f(e.mean)} ± {_f(e.se)} | "
                   f"[{_f(e.lo)}, {_f(e.hi)}] | {delta} | {p} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(CONFIG), help="campaign YAML (its setting/student)")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds: 0..N-1")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="every registered method")
    group.add_argument("--methods", nargs="+", choices=METHODS.names(), metavar="METHOD")
    args = ap.parse_args(argv)
    cfg = load_campaign(args.config)
    methods = METHODS.names() if args.all else (args.methods or DEFAULT_METHODS)
    methods = ["vanilla"] + [m for m in methods if m != "vanilla"]
    seeds = list(range(args.seeds))
    train.install()  # finetune-mode configs train teachers, ceilings and students on Ray Train
    t0 = time.time()
    rows = run(cfg, methods, seeds)
    print(f"Setting {cfg.setting.label} ({cfg.setting.max_examples or 'all'} examples, test "
          f"{cfg.setting.test_size}), student {cfg.student.mode} hidden={cfg.student.hidden}, "
          f"seeds {seeds}; default parameters; whole test split.\n")
    print(format_table(rows))
    print(f"\nPGR: ratio of mean gains over seeds, SE and CI over seeds x items "
          f"(aar_ray.results.stats); accuracies mean ± SE over seeds. Wall time "
          f"{time.time() - t0:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
