from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class Ensemble(Method):
    """Train several students on bootstrap resamples of the weak labels and average them;
    optionally distil the ensemble's agreement back into one student (co-training flavour)."""

    name = "ensemble"
    tags = ("ensembles", "co-training", "variance")

    @dataclass
    class Params:
        members: int = param(4, lo=2, hi=10, help="students in the ensemble")
        bagging: bool = param(True, help="resample examples per member (Poisson weights)")
        distill: bool = param(False, help="retrain one student on the ensemble's own labels")

    def run(self, ctx: MethodContext):
        c = ctx.students.n_classes
        targets = one_hot(ctx.weak, c)
        train_probs, test_probs = [], []
        for k in range(self.p.members):
            w = ctx.rng.poisson(1.0, ctx.students.n_train).astype(np.float32) \
                if self.p.bagging else None
            student = ctx.students.new(seed_offset=k)
            student.fit(targets, w)
            test_probs.append(student.predict("test"))
            if self.p.distill:
                train_probs.append(student.predict("train"))
        if not self.p.distill:
            return np.mean(test_probs, axis=0)
        final = ctx.students.new(seed_offset=self.p.members)
        final.fit(np.mean(train_probs, axis=0))
        return final.predict("test")
