from dataclasses import dataclass

import torch

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class GeneralizedCE(Method):
    """Generalized cross entropy (Zhang & Sabuncu 2018), a loss robust to noisy labels:
    (1 - p_y^q) / q for the weak label y. Its gradient is the cross-entropy gradient scaled by
    p_y^q, so examples where the student confidently disagrees with the teacher pull less;
    q -> 0 recovers cross entropy, q = 1 is the (noise-tolerant) mean absolute error."""

    name = "generalized_ce"
    tags = ("noisy labels", "robust loss")

    @dataclass
    class Params:
        q: float = param(0.7, lo=0.05, hi=1.0, help="robustness: 0 -> cross entropy, 1 -> MAE")

    def loss(self, logits, targets, weights, progress):
        p_y = (targets * torch.softmax(logits, dim=-1)).sum(-1).clamp(min=1e-8)
        per_example = (1 - p_y ** self.p.q) / self.p.q
        return (per_example * weights).sum() / weights.sum().clamp(min=1e-8)

    def run(self, ctx: MethodContext):
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes), loss=self.loss)
        return student.predict("test")
