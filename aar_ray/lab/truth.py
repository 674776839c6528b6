"""Ground truth, held by the scorer alone: labels, the teacher's and the ceiling's answers per
seed, and the one place where predictions become correctness, PGR and ΔPGR.

Every seed scores on its own test items (`w2s.tasks.make_splits`); which of them are *public*
(used for the agents' feedback) and which *private* (the leaderboard, the confirmation) is
fixed per data item by a hash of the data, so an item that gave feedback on one seed is never
a private item on another: selection on public feedback cannot leak into private numbers
through the items.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import CampaignConfig
from aar_ray.results import stats
from aar_ray.w2s import pgr
from aar_ray.w2s.pgr import finite
from aar_ray.w2s.student import StudentInputs
from aar_ray.w2s.trial import Setting, ceiling, student_inputs, teacher

Preds = dict[int, np.ndarray]  # seed -> (n_test, C) probabilities


@dataclass(frozen=True)
class SeedTruth:
    labels: np.ndarray  # (n_test,) true classes of the seed's test items
    weak: np.ndarray  # (n_test,) was the teacher right?
    ceiling: np.ndarray  # (n_test,) was the ceiling right?
    parts: dict[str, np.ndarray]  # "public" / "private" -> positions in the test split


def estimate(transfer: list[np.ndarray], weak: list[np.ndarray],
             ceiling: list[np.ndarray]) -> dict[str, Any]:
    """Pooled PGR, its seed x item se and 95% CI, from per-seed 0/1 arrays (JSON-safe)."""
    est = stats.pgr_ci(transfer, weak, ceiling)
    return {"pgr": finite(est.mean), "se": finite(est.se), "ci_lo": finite(est.lo),
            "ci_hi": finite(est.hi), "n_seeds": len(transfer)}


def compare(method: list[np.ndarray], baseline: list[np.ndarray], weak: list[np.ndarray],
            ceiling: list[np.ndarray]) -> dict[str, Any]:
    """ΔPGR of method over baseline, paired on seeds and items, with CI, se, df and p."""
    cmp = stats.paired_compare(method, baseline, weak, ceiling)
    return {"delta": finite(cmp.delta_pgr), "lo": finite(cmp.lo), "hi": finite(cmp.hi),
            "se": finite(cmp.se), "df": finite(cmp.df), "p": finite(cmp.p_value),
            "effect_size": finite(cmp.effect_size)}


class GroundTruth:
    def __init__(self, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        self.setting = Setting.load(cfg.setting, Path(cfg.cache_dir) if cfg.cache_dir else None,
                                    cfg.finetune)
        n = len(self.setting.data.texts)
        rng = np.random.default_rng(int(self.setting.key("public-pool")[:8], 16))
        self.public_pool = rng.random(n) < cfg.scoring.public_fraction
        self._seeds: dict[int, SeedTruth] = {}

    @property
    def n_classes(self) -> int:
        return self.setting.n_classes

    def seed(self, seed: int) -> SeedTruth:
        """The seed's truth, computed once (teacher and ceiling are cached on disk too)."""
        if seed not in self._seeds:
            s, test = self.setting, self.setting.splits(seed).test
            labels = s.data.labels[test]
            public = self.public_pool[test]
            self._seeds[seed] = SeedTruth(
                labels,
                teacher(s, seed)["test"].argmax(1) == labels,
                ceiling(s, seed, self.cfg.student, self.cfg.finetune).argmax(1) == labels,
                {"public": np.flatnonzero(public), "private": np.flatnonzero(~public)})
        return self._seeds[seed]

    def inputs(self, seed: int, shuffle: int | None = None) -> StudentInputs:
        """What trial workers get for `seed`: no labels. `shuffle=r` permutes the teacher's
        labels across examples with permutation r (the teacher-use control)."""
        weak = None
        if shuffle is not None:
            weak = teacher(self.setting, seed)["train"]
            weak = weak[np.random.default_rng([10_000, seed, shuffle]).permutation(len(weak))]
        return student_inputs(self.setting, seed, self.cfg.student.mode, weak=weak)

    # ---- correctness ---------------------------------------------------------------------

    def check_shape(self, seed: int, probs: np.ndarray) -> str | None:
        want = (len(self.seed(seed).labels), self.n_classes)
        got = np.asarray(probs).shape
        return None if got == want else f"seed {seed}: predictions of shape {got}, not {want}"

    def correct(self, preds: Preds, part: str) -> dict[int, np.ndarray]:
        """{seed: (items,) bool} on the seed's `part` items."""
        out = {}
        for seed, p in sorted(preds.items()):
            t = self.seed(seed)
            items = t.parts[part]
            out[seed] = np.asarray(p)[items].argmax(1) == t.labels[items]
        return out

    def reference(self, seeds: list[int], part: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The teacher's and the ceiling's correctness on `part`, one array per seed."""
        ts = [self.seed(s) for s in seeds]
        return ([t.weak[t.parts[part]] for t in ts], [t.ceiling[t.parts[part]] for t in ts])

    # ---- numbers -------------------------------------------------------------------------

    def estimate(self, preds: Preds, part: str) -> dict[str, Any]:
        """Pooled PGR with its seed x item se and 95% CI, and each seed's accuracies."""
        correct = self.correct(preds, part)
        seeds = sorted(correct)
        weak, ceil = self.reference(seeds, part)
        per_seed = [{"seed": s, "weak_acc": float(w.mean()), "ceiling_acc": float(c.mean()),
                     "transfer_acc": float(correct[s].mean()),
                     "pgr": pgr.pgr(float(correct[s].mean()), float(w.mean()), float(c.mean()))}
                    for s, w, c in zip(seeds, weak, ceil, strict=True)]
        return {**estimate([correct[s] for s in seeds], weak, ceil), "per_seed": per_seed}

    def compare(self, preds: Preds, base: Preds, part: str) -> dict[str, Any] | None:
        """ΔPGR of `preds` over `base` on the seeds both have, paired on seeds and items; None
        without a common seed."""
        seeds = sorted(set(preds) & set(base))
        if not seeds:
            return None
        mine = self.correct({s: preds[s] for s in seeds}, part)
        theirs = self.correct({s: base[s] for s in seeds}, part)
        weak, ceil = self.reference(seeds, part)
        return {**compare([mine[s] for s in seeds], [theirs[s] for s in seeds], weak, ceil),
                "seeds": seeds}

    def accuracies(self, seeds: list[int], part: str) -> dict[str, float]:
        """The teacher's and the ceiling's mean accuracy over `seeds` on `part`."""
        weak, ceil = self.reference(seeds, part)
        return {"weak_acc": float(np.mean([w.mean() for w in weak])),
                "ceiling_acc": float(np.mean([c.mean() for c in ceil]))}
