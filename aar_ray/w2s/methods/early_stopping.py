from dataclasses import dataclass

from aar_ray.w2s.methods import Method, MethodContext, param, register
from aar_ray.w2s.student import EarlyStopping, one_hot, weak_agreement


@register
class EarlyStop(Method):
    """Early stopping on weak-label agreement (Burns et al. 2023 observe that stopping early
    limits how much the strong student imitates the teacher's errors). Hold out part of the
    weak-labelled split, train on the rest, and score each epoch by the student's agreement
    with the held-out weak labels; stop once it has not improved for `patience` epochs and keep
    the best epoch's weights (ties keep the earlier, shorter one). With `refit`, a fresh student
    is then trained on every example for that best number of epochs."""

    name = "early_stopping"
    tags = ("regularisation", "training length", "noisy labels")

    @dataclass
    class Params:
        holdout: float = param(0.2, lo=0.05, hi=0.5,
                               help="share of the weak-labelled examples held out to validate on")
        patience: int = param(3, lo=1, hi=100,
                              help="epochs without a better agreement before stopping")
        max_epochs: int = param(0, lo=0, hi=200,
                                help="most epochs to train; 0 = the student's configured length")
        refit: bool = param(False, help="retrain on all examples for the best epoch count")

    def run(self, ctx: MethodContext):
        targets = one_hot(ctx.weak, ctx.students.n_classes)
        weights, held = ctx.hold_out(self.p.holdout)
        epochs = self.p.max_epochs or ctx.students.epochs
        student = ctx.students.new()
        student.fit(targets, weights, epochs=epochs, early_stopping=EarlyStopping(
            weak_agreement(ctx.weak, held), patience=self.p.patience))
        if self.p.refit:
            best = student.best_epoch
            student = ctx.students.new(seed_offset=1)
            student.fit(targets, epochs=best)
        return student.predict("test")
