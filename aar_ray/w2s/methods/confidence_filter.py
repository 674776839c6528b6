from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class ConfidenceFilter(Method):
    """Train only on the examples the teacher is most confident about, per class, so the
    student is not taught the teacher's coin flips."""

    name = "confidence_filter"
    tags = ("data selection", "reweighting", "calibration")

    @dataclass
    class Params:
        keep: float = param(0.5, lo=0.05, hi=1.0, help="share of examples kept")
        per_class: bool = param(True, help="keep the same share of each weak class")

    def run(self, ctx: MethodContext):
        conf = ctx.weak.max(axis=1)
        hard = ctx.weak.argmax(axis=1)
        weights = np.zeros(len(conf), dtype=np.float32)
        groups = [np.flatnonzero(hard == c) for c in range(ctx.students.n_classes)] \
            if self.p.per_class else [np.arange(len(conf))]
        for idx in groups:
            k = max(1, int(round(self.p.keep * len(idx)))) if len(idx) else 0
            weights[idx[np.argsort(-conf[idx])[:k]]] = 1.0
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes), weights)
        return student.predict("test")
