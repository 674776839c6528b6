from dataclasses import dataclass

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class LabelSmoothing(Method):
    """Smooth the teacher's hard labels towards uniform so the student never fits them with
    full confidence."""

    name = "label_smoothing"
    tags = ("regularisation", "distillation")

    @dataclass
    class Params:
        epsilon: float = param(0.1, lo=0.0, hi=0.5, help="mass moved to the uniform distribution")

    def run(self, ctx: MethodContext):
        c = ctx.students.n_classes
        targets = (1 - self.p.epsilon) * one_hot(ctx.weak, c) + self.p.epsilon / c
        student = ctx.students.new()
        student.fit(targets)
        return student.predict("test")
