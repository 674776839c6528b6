from dataclasses import dataclass

import torch

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot, soft_cross_entropy


@register
class Bootstrap(Method):
    """Bootstrapping (Reed et al. 2014): the target is a mix of the weak label and the
    student's own current prediction (soft, or hard = its argmax), a consistency objective
    that resists noisy labels."""

    name = "bootstrap"
    tags = ("noisy labels", "student prior", "regularisation")

    @dataclass
    class Params:
        beta: float = param(0.8, lo=0.0, hi=1.0, help="weight of the weak label in the target")
        kind: str = param("hard", choices=["soft", "hard"], help="student's part of the target")

    def loss(self, logits, targets, weights, progress):
        probs = torch.softmax(logits.detach(), dim=-1)
        if self.p.kind == "hard":
            probs = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[1]).float()
        mixed = self.p.beta * targets + (1 - self.p.beta) * probs
        return soft_cross_entropy(logits, mixed, weights)

    def run(self, ctx: MethodContext):
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes), loss=self.loss)
        return student.predict("test")
