from aar_ray.w2s.methods import Method, MethodContext, register
from aar_ray.w2s.student import one_hot


@register
class Vanilla(Method):
    """Naive weak-to-strong: train the student on the teacher's hard labels (the baseline)."""

    name = "vanilla"
    tags = ("baseline",)

    def run(self, ctx: MethodContext):
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes))
        return student.predict("test")
