from dataclasses import dataclass

import torch

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot, soft_cross_entropy


@register
class AuxConfidence(Method):
    """Auxiliary confidence loss (Burns et al. 2023): mix the weak-label loss with a loss
    towards the student's own hardened predictions, letting a confident student overrule the
    teacher. The mixing weight ramps up over a warm-up."""

    name = "aux_confidence"
    tags = ("student prior", "confidence", "regularisation")

    @dataclass
    class Params:
        alpha: float = param(0.75, lo=0.0, hi=1.0, help="final weight of the self-target loss")
        warmup: float = param(0.2, lo=0.0, hi=1.0, help="share of training to ramp alpha up")

    def loss(self, logits, targets, weights, progress):
        alpha = self.p.alpha * min(1.0, progress / self.p.warmup) if self.p.warmup else self.p.alpha
        probs = torch.softmax(logits.detach(), dim=-1)
        # harden with the threshold that matches the weak labels' class balance in the batch,
        # as in Burns et al., so the self-target does not collapse to one class
        prior = targets.mean(0)
        if probs.shape[1] == 2:
            thr = torch.quantile(probs[:, 1], (1 - prior[1]).clamp(0, 1))
            self_hard = torch.stack([(probs[:, 1] <= thr), (probs[:, 1] > thr)], 1).float()
        else:
            self_hard = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[1]).float()
        return ((1 - alpha) * soft_cross_entropy(logits, targets, weights)
                + alpha * soft_cross_entropy(logits, self_hard, weights))

    def run(self, ctx: MethodContext):
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes), loss=self.loss)
        return student.predict("test")
