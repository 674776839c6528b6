"""Methods the offline researcher writes as code, through the same `write_method` tool Claude
uses: each composes ideas of registered methods (filtering, soft targets, self-training,
ensembles) into one new method. They run in the sandbox like any agent's code, so every
`make run` exercises that path.

Each entry: a description (matched against the agent's direction, like the built-ins'), the
source, and the parameter schema the brain searches (the same JSON-schema shape that
`describe_method` gives for built-ins).
"""
from __future__ import annotations

from typing import Any

_HEADER = '''from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param
from aar_ray.w2s.student import one_hot
'''

FILTER_THEN_SELF_TRAIN = _HEADER + '''

class FilterThenSelfTrain(Method):
    """Train on the teacher's most confident examples only, then let that student relabel
    everything (mixed with the teacher) and train a fresh student on the mixture."""

    name = "filter_then_self_train"

    @dataclass
    class Params:
        keep: float = param(0.6, lo=0.2, hi=1.0, help="share of confident examples kept")
        mix: float = param(0.5, lo=0.0, hi=1.0, help="weight of the student's own labels")

    def run(self, ctx: MethodContext):
        n_classes = ctx.students.n_classes
        conf = ctx.weak.max(axis=1)
        weights = (conf >= np.quantile(conf, 1 - self.p.keep)).astype(np.float32)
        first = ctx.students.new()
        first.fit(one_hot(ctx.weak, n_classes), weights)
        own = first.predict("train")
        target = (1 - self.p.mix) * ctx.weak + self.p.mix * own
        second = ctx.students.new(seed_offset=1)
        second.fit(one_hot(target, n_classes))
        return second.predict("test")
'''

CONFIDENT_BAGGING = _HEADER + '''

class ConfidentBagging(Method):
    """A committee: each student learns from a bootstrap sample of the teacher's confident
    examples; the committee's mean vote is the answer."""

    name = "confident_bagging"

    @dataclass
    class Params:
        members: int = param(3, lo=2, hi=5, help="students in the committee")
        keep: float = param(0.7, lo=0.2, hi=1.0, help="share of confident examples kept")

    def run(self, ctx: MethodContext):
        n_classes = ctx.students.n_classes
        conf = ctx.weak.max(axis=1)
        confident = np.flatnonzero(conf >= np.quantile(conf, 1 - self.p.keep))
        votes = []
        for k in range(self.p.members):
            draw = ctx.rng.choice(confident, size=len(confident), replace=True)
            weights = np.bincount(draw, minlength=len(conf)).astype(np.float32)
            student = ctx.students.new(seed_offset=k)
            student.fit(one_hot(ctx.weak, n_classes), weights)
            votes.append(student.predict("test"))
        return np.mean(votes, axis=0)
'''

CALIBRATED_SOFT = _HEADER + '''

class CalibratedSoftTargets(Method):
    """Soft targets sharpened or flattened by a temperature, each example weighted by the
    teacher's confidence: trust the teacher where it is sure, and only as much as it is."""

    name = "calibrated_soft_targets"

    @dataclass
    class Params:
        temperature: float = param(1.0, lo=0.3, hi=3.0, help="< 1 sharpens, > 1 flattens")
        power: float = param(1.0, lo=0.0, hi=4.0, help="weight = confidence ** power")

    def run(self, ctx: MethodContext):
        logits = np.log(np.clip(ctx.weak, 1e-6, 1.0)) / self.p.temperature
        target = np.exp(logits - logits.max(axis=1, keepdims=True))
        target /= target.sum(axis=1, keepdims=True)
        weights = (ctx.weak.max(axis=1) ** self.p.power).astype(np.float32)
        student = ctx.students.new()
        student.fit(target.astype(np.float32), weights)
        return student.predict("test")
'''


def _number(default: float, lo: float, hi: float, integer: bool = False) -> dict[str, Any]:
    return {"type": "integer" if integer else "number", "default": default, "minimum": lo,
            "maximum": hi}


COMPOSITIONS: dict[str, dict[str, Any]] = {
    "filter_then_self_train": {
        "summary": "confidence filtering, then self-training: the student relabels data "
                   "after learning from the confident examples (iterate, pseudo-labels)",
        "source": FILTER_THEN_SELF_TRAIN,
        "properties": {"keep": _number(0.6, 0.2, 1.0), "mix": _number(0.5, 0.0, 1.0)}},
    "confident_bagging": {
        "summary": "an ensemble committee of students, each trained on a bootstrap sample of "
                   "the teacher's confident examples (ensembles, data selection, noise)",
        "source": CONFIDENT_BAGGING,
        "properties": {"members": _number(3, 2, 5, integer=True),
                       "keep": _number(0.7, 0.2, 1.0)}},
    "calibrated_soft_targets": {
        "summary": "calibration: soft teacher probabilities at a temperature, weighted by the "
                   "teacher's confidence (distillation, trust, robust labels)",
        "source": CALIBRATED_SOFT,
        "properties": {"temperature": _number(1.0, 0.3, 3.0), "power": _number(1.0, 0.0, 4.0)}},
}
