from dataclasses import dataclass

import numpy as np
import torch

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot, soft_cross_entropy


@register
class InfoMax(Method):
    """Elicit the student's own prior with little teacher: regularised information
    maximisation (Krause et al. 2010) makes the student's predictions confident and balanced
    across classes — clusters it already sees — while a small weak-label term names the
    classes. The result is oriented to agree with the teacher."""

    name = "info_max"
    tags = ("student prior", "unsupervised elicitation", "representations", "simplicity")

    @dataclass
    class Params:
        weak_weight: float = param(0.3, lo=0.0, hi=1.0, help="weight of the weak-label loss")
        balance: float = param(1.0, lo=0.0, hi=5.0, help="weight of the class-balance term")

    def loss(self, logits, targets, weights, progress):
        probs = torch.softmax(logits, dim=-1)
        logp = torch.log_softmax(logits, dim=-1)
        cond_entropy = -(probs * logp).sum(-1).mean()
        marginal = probs.mean(0)
        marginal_entropy = -(marginal * torch.log(marginal.clamp(min=1e-8))).sum()
        unsupervised = cond_entropy - self.p.balance * marginal_entropy
        return unsupervised + self.p.weak_weight * soft_cross_entropy(logits, targets, weights)

    def run(self, ctx: MethodContext):
        c = ctx.students.n_classes
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, c), loss=self.loss)
        test = student.predict("test")
        if c == 2:  # clusters carry no names: take the orientation that agrees with the teacher
            agree = (student.predict("train").argmax(1) == ctx.weak.argmax(1)).mean()
            if agree < 0.5:
                test = test[:, ::-1].copy()
        return np.asarray(test)
