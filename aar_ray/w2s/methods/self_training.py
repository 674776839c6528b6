from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class SelfTraining(Method):
    """Train on weak labels, then for a few rounds replace the labels the student is most
    confident about with its own predictions and retrain from scratch."""

    name = "self_training"
    tags = ("student prior", "pseudo-labels", "data relabelling")

    @dataclass
    class Params:
        rounds: int = param(2, lo=1, hi=5, help="relabel-and-retrain rounds")
        relabel: float = param(0.3, lo=0.0, hi=1.0,
                               help="share of examples relabelled by the student each round")

    def run(self, ctx: MethodContext):
        c = ctx.students.n_classes
        targets = one_hot(ctx.weak, c)
        student = ctx.students.new()
        student.fit(targets)
        for r in range(self.p.rounds):
            own = student.predict("train")
            k = int(self.p.relabel * len(own))
            confident = np.argsort(-own.max(axis=1))[:k]
            targets = one_hot(ctx.weak, c)
            targets[confident] = one_hot(own[confident], c)
            student = ctx.students.new(seed_offset=r + 1)
            student.fit(targets)
        return student.predict("test")
