from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param, register


@register
class SoftLabels(Method):
    """Distil the teacher's full distribution instead of its argmax, sharpened or softened by a
    temperature: the student sees how unsure the teacher was."""

    name = "soft_labels"
    tags = ("distillation", "calibration")

    @dataclass
    class Params:
        temperature: float = param(1.0, lo=0.1, hi=10.0,
                                   help="<1 sharpens the teacher's probabilities, >1 softens")

    def run(self, ctx: MethodContext):
        logp = np.log(np.clip(ctx.weak, 1e-8, 1.0)) / self.p.temperature
        targets = np.exp(logp - logp.max(axis=1, keepdims=True))
        targets /= targets.sum(axis=1, keepdims=True)
        student = ctx.students.new()
        student.fit(targets)
        return student.predict("test")
