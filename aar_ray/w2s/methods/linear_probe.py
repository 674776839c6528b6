from dataclasses import dataclass

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import one_hot


@register
class LinearProbe(Method):
    """A linear probe: logistic regression on the strong model's frozen features, trained on
    the weak labels, whatever head the campaign configures. A linear map has less capacity to
    fit the teacher's idiosyncratic errors than an MLP head, so the student's own linear
    structure decides more of the labels (the linear-probe baselines of Burns et al. 2023).
    Needs the frozen features, so it runs in head mode only."""

    name = "linear_probe"
    tags = ("simplicity", "representations", "regularisation")
    modes = ("head",)

    @dataclass
    class Params:
        weight_decay: float = param(1e-4, lo=0.0, hi=10.0,
                                    help="AdamW weight decay of the probe (its L2 regulariser)")
        soft: bool = param(False, help="fit the teacher's probabilities instead of its argmax")

    def run(self, ctx: MethodContext):
        targets = ctx.weak if self.p.soft else one_hot(ctx.weak, ctx.students.n_classes)
        student = ctx.students.new(hidden=0, weight_decay=self.p.weight_decay)
        student.fit(targets)
        return student.predict("test")
