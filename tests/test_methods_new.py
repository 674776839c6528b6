"""The method interface (training length, early stopping, modes, `aar trial`'s defaults) and the
methods added with it: early_stopping, linear_probe, generalized_ce. Synthetic features keep
these fast; the real-data smoke test of every method is test_w2s.py's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aar_ray.config import ConfigError, FinetuneConfig, StudentConfig
from aar_ray.w2s.methods import Method, MethodContext, catalog, describe, make_method, register
from aar_ray.w2s.student import (
    EarlyStopping,
    HeadStudents,
    StudentInputs,
    one_hot,
    soft_cross_entropy,
)
from aar_ray.w2s.trial import run_method, run_method_instance

CFG = StudentConfig(hidden=128, epochs=10, lr=3e-3, batch_size=64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny heads gain nothing from threads, and threads spin badly on a shared, loaded box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int = 900, d: int = 16, flip: float = 0.3, seed: int = 0):
    """Two Gaussian classes; weak labels are the truth with a `flip` share flipped at random."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += 1.5 * (2 * y - 1)
    weak_y = np.where(rng.random(n) < flip, 1 - y, y)
    weak = (0.8 * one_hot(weak_y, 2) + 0.1).astype(np.float32)
    return x, y, weak


class Spy:
    """A student factory that keeps every student it hands out."""

    def __init__(self, inner: HeadStudents) -> None:
        self.inner, self.made = inner, []
        self.mode, self.epochs = inner.mode, inner.epochs
        self.n_train, self.n_classes = inner.n_train, inner.n_classes

    def new(self, seed_offset: int = 0, **kw):
        self.made.append(self.inner.new(seed_offset, **kw))
        return self.made[-1]


def test_fit_takes_epochs_and_keeps_the_best_epoch():
    x, _, weak = blobs(300)
    students = HeadStudents(x[:200], x[200:], 2, CFG, seed=0)
    targets = one_hot(weak[:200], 2)
    s = students.new()
    s.fit(targets, epochs=3)
    assert (s.epochs_run, s.best_epoch) == (3, 3)
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2] + [0.0] * 100)  # peaks after epoch 2
    stopped = students.new()
    stopped.fit(targets, epochs=50, early_stopping=EarlyStopping(lambda p: next(scores),
                                                                 patience=3))
    assert (stopped.epochs_run, stopped.best_epoch) == (5, 2)
    two = students.new()
    two.fit(targets, epochs=2)  # the same run cut at epoch 2: the weights kept must be these
    np.testing.assert_array_equal(stopped.predict("test"), two.predict("test"))
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2])
    last = students.new()
    last.fit(targets, epochs=50, early_stopping=EarlyStopping(lambda p: next(scores), patience=3,
                                                              restore_best=False))
    five = students.new()
    five.fit(targets, epochs=5)
    assert last.best_epoch == 5
    np.testing.assert_array_equal(last.predict("test"), five.predict("test"))


def test_default_fit_is_the_configured_training():
    x, _, weak = blobs(300)
    students = HeadStudents(x[:200], x[200:], 2, CFG, seed=0)
    a, b = students.new(), students.new()
    a.fit(one_hot(weak[:200], 2))
    b.fit(one_hot(weak[:200], 2), epochs=CFG.epochs)
    assert a.epochs_run == CFG.epochs
    np.testing.assert_array_equal(a.predict("test"), b.predict("test"))


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, r"fit\(epochs=...\): expected an integer in \[1, 1000\], got 0"),
    ({"epochs": 2.5}, r"fit\(epochs=...\)"), ({"epochs": True}, r"fit\(epochs=...\)"),
    ({"epochs": "3"}, r"fit\(epochs=...\)"), ({"epochs": 5000}, r"fit\(epochs=...\)"),
    ({"early_stopping": 3}, r"expected an EarlyStopping or None, got int"),
])
def test_fit_rejects_a_bad_training_length(kwargs, match):
    x, _, weak = blobs(100)
    student = HeadStudents(x[:80], x[80:], 2, CFG, seed=0).new()
    with pytest.raises(ConfigError, match=match):
        student.fit(one_hot(weak[:80], 2), **kwargs)


def test_early_stopping_rule_is_validated():
    with pytest.raises(ConfigError, match="criterion: expected a callable"):
        EarlyStopping(0.5)
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(lambda p: 0.0, patience=0)
    with pytest.raises(ConfigError, match="min_delta"):
        EarlyStopping(lambda p: 0.0, min_delta=float("nan"))
    x, _, weak = blobs(100)
    student = HeadStudents(x[:80], x[80:], 2, CFG, seed=0).new()
    with pytest.raises(ValueError, match="criterion returned nan after epoch 1"):
        student.fit(one_hot(weak[:80], 2), early_stopping=EarlyStopping(lambda p: float("nan")))


def test_hold_out_sets_aside_a_share_of_the_weak_labels():
    x, _, weak = blobs(200)
    ctx = MethodContext(weak, HeadStudents(x, x, 2, CFG, 0), np.random.default_rng(0))
    weights, held = ctx.hold_out(0.25)
    assert len(held) == 50 and len(set(held)) == 50
    assert weights[held].sum() == 0 and weights.sum() == 150
    for bad in (0, 1, 1.5, True, 0.001):
        with pytest.raises(ConfigError, match="hold_out"):
            ctx.hold_out(bad)


def test_early_stopping_method_stops_before_max_epochs_on_noisy_weak_labels():
    x, y, weak = blobs(1500, flip=0.3)
    n = 1000
    spy = Spy(HeadStudents(x[:n], x[n:], 2, CFG, seed=0))
    m = make_method("early_stopping", {"max_epochs": 100, "patience": 3})
    probs = m.run(MethodContext(weak[:n], spy, np.random.default_rng(0)))
    (student,) = spy.made
    assert student.epochs_run < 100, "agreement with held-out noisy labels never stopped rising"
    assert student.best_epoch == student.epochs_run - 3  # stopped after `patience` stale epochs
    # the 30% flips are random, so the best agreement on held-out weak labels sits near 0.7
    np.testing.assert_array_equal(probs, student.predict("test"))
    assert (probs.argmax(1) == y[n:]).mean() > 0.85
    refit = Spy(HeadStudents(x[:n], x[n:], 2, CFG, seed=0))
    make_method("early_stopping", {"max_epochs": 100, "refit": True}).run(
        MethodContext(weak[:n], refit, np.random.default_rng(0)))
    first, final = refit.made
    assert final.epochs_run == first.best_epoch


def test_linear_probe_is_linear_and_regularised():
    x, _, weak = blobs(600)
    inputs = StudentInputs(0, 2, weak[:400], x_train=x[:400], x_test=x[400:])

    def logit_residual(method: str, params: dict) -> tuple[float, float]:
        p = run_method(method, params, inputs, CFG)
        logit = np.log(p[:, 1]) - np.log(p[:, 0])
        design = np.c_[x[400:], np.ones(len(logit))]
        fit = design @ np.linalg.lstsq(design, logit, rcond=None)[0]
        return float(np.abs(fit - logit).max() / np.abs(logit).max()), float(np.abs(logit).mean())

    residual, scale = logit_residual("linear_probe", {})
    assert residual < 1e-3, "the probe's log-odds are not an affine function of the features"
    assert logit_residual("vanilla", {})[0] > 0.05  # the configured MLP head is not linear
    _, shrunk = logit_residual("linear_probe", {"weight_decay": 10.0})
    assert shrunk < 0.8 * scale  # its weight decay is its own, and it acts


def test_modes_are_checked_before_anything_trains():
    assert describe("linear_probe")["modes"] == ["head"]
    assert describe("vanilla")["modes"] == ["head", "finetune"]
    # what agents and sweeps choose from: only methods that run in the campaign's mode
    assert "linear_probe" not in catalog("finetune") and "vanilla" in catalog("finetune")
    assert set(catalog("head")) == set(catalog()) >= {"linear_probe", "early_stopping"}
    with pytest.raises(ConfigError, match=r"method linear_probe does not support student mode "
                                          r"'finetune'; it runs in \['head'\]"):
        make_method("linear_probe", None, "finetune")
    texts = StudentInputs(0, 2, np.full((4, 2), 0.5, np.float32), texts_train=["a"] * 4,
                          texts_test=["b"] * 2)
    with pytest.raises(ConfigError, match="does not support student mode 'finetune'"):
        run_method("linear_probe", None, texts, StudentConfig(mode="finetune"))

    class Gpu(Method):  # an agent's method with a mode that does not exist
        """-"""
        name, modes = "gpu_only", ("gpu",)

        def run(self, ctx):
            raise AssertionError("must not run")

    with pytest.raises(ConfigError, match=r"modes \('gpu',\) must be a non-empty subset"):
        run_method_instance(Gpu(Gpu.Params()), texts, StudentConfig())


def test_finetune_students_say_they_have_no_features():
    from aar_ray.w2s.finetune import FinetuneStudents

    inputs = StudentInputs(0, 2, np.full((4, 2), 0.5, np.float32), texts_train=["a"] * 4,
                           texts_test=["b"] * 2)
    students = FinetuneStudents(inputs, FinetuneConfig())
    assert (students.mode, students.epochs) == ("finetune", FinetuneConfig().epochs)
    with pytest.raises(ConfigError, match=r"head mode only.*modes = \(\"head\",\)"):
        students.features("train")


def test_generalized_ce_scales_the_gradient_by_the_weak_label_probability():
    q = 0.7
    m = make_method("generalized_ce", {"q": q})
    logits = torch.tensor([[4.0, -1.0], [0.2, 0.1], [-2.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    weights = torch.ones(3)

    def grad(loss) -> torch.Tensor:
        logits.grad = None
        loss(logits, targets, weights, 0.0).backward()
        return logits.grad.clone()

    p_y = (torch.softmax(logits, -1) * targets).sum(-1).detach()
    # the robustness: a confident disagreement (row 0, p_y ≈ 0.007) barely pulls
    torch.testing.assert_close(grad(m.loss), p_y[:, None] ** q * grad(soft_cross_entropy))


def test_aar_trial_defaults_are_the_default_campaigns():
    from aar_ray.cli import DEFAULT_CAMPAIGN, build_parser, trial_config
    from aar_ray.config import load_campaign

    makefile = Path(__file__).resolve().parents[1] / "Makefile"
    assert f"--config {DEFAULT_CAMPAIGN.relative_to(makefile.parent)}" in makefile.read_text()
    base = load_campaign(DEFAULT_CAMPAIGN)
    cfg = trial_config(build_parser().parse_args(["trial"]))
    assert (cfg.setting, cfg.seeds, cfg.student, cfg.finetune) == (
        base.setting, base.default_trial_seeds(), base.student, base.finetune)
    cfg = trial_config(build_parser().parse_args(
        ["trial", "--max-examples", "500", "--hidden", "0", "--seeds", "3,4"]))
    assert (cfg.setting.max_examples, cfg.setting.task, cfg.student.hidden, cfg.student.epochs,
            cfg.seeds) == (500, base.setting.task, 0, base.student.epochs, [3, 4])


def test_a_method_can_use_the_interface_in_either_mode():
    """What docs/methods.md shows: a method that sets its training length and stops early,
    written only against the interface both modes share."""

    @register
    class ShortRun(Method):
        """Half the configured epochs, stopped early on held-out weak labels."""
        name = "test_short_run"

        def run(self, ctx):
            from aar_ray.w2s.student import weak_agreement

            weights, held = ctx.hold_out(0.2)
            student = ctx.students.new()
            student.fit(one_hot(ctx.weak, ctx.students.n_classes), weights,
                        epochs=max(1, ctx.students.epochs // 2),
                        early_stopping=EarlyStopping(weak_agreement(ctx.weak, held)))
            self.epochs_run = student.epochs_run
            return student.predict("test")

    try:
        x, _, weak = blobs(300)
        inputs = StudentInputs(0, 2, weak[:200], x_train=x[:200], x_test=x[200:])
        m = make_method("test_short_run", None, "finetune")  # both modes accepted
        probs = run_method_instance(m, inputs, CFG)
        assert probs.shape == (100, 2) and 1 <= m.epochs_run <= CFG.epochs // 2
    finally:
        from aar_ray.w2s.methods import METHODS

        METHODS._items.pop("test_short_run", None)



def test_finetune_mode_takes_the_same_training_length_and_early_stopping(monkeypatch):
    """Fine-tuning's training loop, run in process (no Ray): a tiny random Qwen3."""
    from aar_ray.w2s import finetune
    from aar_ray.w2s.finetune import FinetuneStudents, FitResult, Worker, loop_config
    from aar_ray.w2s.tasks import load_task

    def in_process(job):
        out = {}

        def report(metrics, checkpoint_dir):
            out["metrics"] = metrics
            if checkpoint_dir is not None:
                out["probs"] = finetune.read_predictions(checkpoint_dir)

        finetune.train_loop(loop_config(job), Worker(0, 1, torch.device("cpu"), lambda m: m,
                                                     report))
        return FitResult(out["probs"], out["metrics"])

    monkeypatch.setattr(finetune, "_trainer", in_process)
    texts = load_task("compositional", 200).texts
    weak = np.random.default_rng(0).dirichlet([2.0, 2.0], 24).astype(np.float32)
    inputs = StudentInputs(0, 2, weak, texts_train=texts[:24], texts_test=texts[24:32])
    ft = FinetuneConfig(strong_model="tiny-qwen3", epochs=4, batch_size=8, max_length=16)
    students = FinetuneStudents(inputs, ft)
    stopped = students.new()
    stopped.fit(weak, early_stopping=EarlyStopping(lambda p: 0.5, patience=1))
    assert (stopped.epochs_run, stopped.best_epoch) == (2, 1)
    assert stopped.metrics["steps"] == 2 * 3  # two epochs of 24 / 8 batches
    one = students.new()
    one.fit(weak, epochs=1)  # the weights kept are epoch 1's
    np.testing.assert_allclose(stopped.predict("test"), one.predict("test"), atol=1e-6)
    probs = run_method("early_stopping", {"max_epochs": 3, "patience": 1}, inputs,
                       StudentConfig(mode="finetune"), ft)
    assert probs.shape == (8, 2)
