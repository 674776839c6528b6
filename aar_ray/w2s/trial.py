"""One W2S trial as pure functions: teacher → weak labels → student by a method → PGR.

The trusted side (`teacher`, `ceiling`, `seed_correct`) sees labels; `run_method` — what agents'
trials execute — gets only `StudentInputs`: features or texts and the teacher's soft labels.
Teacher and ceiling artefacts are cached by content hash, so they are computed once per
(task, pair, teacher and student recipe, seed) and not per trial.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import FinetuneConfig, SettingConfig, StudentConfig
from aar_ray.w2s import features, pgr
from aar_ray.w2s.methods import Method, MethodContext, check_mode, make_method
from aar_ray.w2s.models import MODELS
from aar_ray.w2s.student import HeadStudents, StudentInputs, one_hot
from aar_ray.w2s.tasks import SPLITS_VERSION, TASKS, Splits, TaskData, load_task, make_splits

TEACHER_VERSION = 1  # bump when the teacher's training changes: invalidates cached weak labels


@dataclass
class Setting:
    """A loaded setting, trusted side: data with labels."""

    cfg: SettingConfig
    data: TaskData
    test_size: int
    cache_dir: Path
    finetune: FinetuneConfig | None = None  # how a `teacher: finetune` teacher is trained

    @classmethod
    def load(cls, cfg: SettingConfig, cache_dir: Path | None = None,
             finetune: FinetuneConfig | None = None) -> Setting:
        spec = TASKS.get(cfg.task)
        data = load_task(cfg.task, cfg.max_examples)
        test_size = cfg.test_size or min(spec.default_test_size, len(data.texts) // 4)
        return cls(cfg, data, test_size, Path(cache_dir or features.default_cache_dir()),
                   finetune)

    def splits(self, seed: int) -> Splits:
        return make_splits(len(self.data.texts), self.test_size, seed)

    def texts(self, idx: np.ndarray) -> list[str]:
        return [self.data.texts[i] for i in idx]

    def key(self, *parts: Any) -> str:
        blob = json.dumps([self.data.fingerprint(), self.test_size, SPLITS_VERSION, *parts],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def n_classes(self) -> int:
        return len(self.data.classes)

    def embed(self, model: str, texts: list[str]) -> np.ndarray:
        """Features of this setting's texts under `model`, cached (pairs: f(A) - f(B))."""
        return features.embed(model, texts, self.cache_dir, TASKS.get(self.cfg.task).pairwise)


def _cached(path: Path, compute) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def revisions(cfg: SettingConfig) -> dict[str, str | None]:
    """The hub commits a setting's data and models are pinned to (None: packaged, generated or
    random from a config)."""
    return {"task": TASKS.get(cfg.task).revision, "weak": MODELS.get(cfg.weak).revision,
            "strong": MODELS.get(cfg.strong).revision}


def teacher_recipe(s: Setting) -> FinetuneConfig | None:
    """How a `teacher: finetune` teacher is trained: the setting's fine-tuning recipe applied
    to the weak model (None for a probe)."""
    if s.cfg.teacher == "probe":
        return None
    if s.finetune is None:
        raise ValueError(f"setting {s.cfg.label} has teacher: finetune, but no finetune config "
                         "was given to Setting.load")
    return replace(s.finetune, strong_model=s.cfg.weak)


def teacher(s: Setting, seed: int) -> dict[str, np.ndarray]:
    """The weak teacher trained on the labelled split's true labels: soft labels on the
    unlabelled split ('train') and on the test split ('test'). `probe`: a logistic regression on
    the weak model's frozen features; `finetune`: the weak model fine-tuned the way students are.
    Cached by content, mode and recipe."""
    ft = teacher_recipe(s)
    key = s.key("teacher", TEACHER_VERSION, s.cfg.weak, seed, s.cfg.teacher,
                ft.recipe() if ft else None)
    sp = s.splits(seed)

    def probe() -> dict[str, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        x = {k: s.embed(s.cfg.weak, s.texts(getattr(sp, k)))
             for k in ("labelled", "unlabelled", "test")}
        clf = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
        clf.fit(x["labelled"], s.data.labels[sp.labelled])
        return {"train": clf.predict_proba(x["unlabelled"]).astype(np.float32),
                "test": clf.predict_proba(x["test"]).astype(np.float32)}

    def fine_tuned() -> dict[str, np.ndarray]:
        from aar_ray.w2s.finetune import fine_tune

        truth = one_hot(s.data.labels[sp.labelled], s.n_classes)
        result = fine_tune(ft, seed, s.n_classes, s.texts(sp.labelled), truth,
                           {"train": s.texts(sp.unlabelled), "test": s.texts(sp.test)},
                           role="teacher")
        return result.probs

    return _cached(s.cache_dir / "weak" / f"{key}.npz", probe if ft is None else fine_tuned)


def student_inputs(s: Setting, seed: int, mode: str = "head",
                   weak: np.ndarray | None = None) -> StudentInputs:
    """What the student side gets for `seed`; `weak` overrides the teacher's labels (the
    teacher-use control passes shuffled ones)."""
    sp = s.splits(seed)
    weak = teacher(s, seed)["train"] if weak is None else weak
    tr, te = s.texts(sp.unlabelled), s.texts(sp.test)
    if mode == "finetune":
        return StudentInputs(seed, s.n_classes, weak, texts_train=tr, texts_test=te,
                             model=s.cfg.strong)
    return StudentInputs(seed, s.n_classes, weak,
                         x_train=s.embed(s.cfg.strong, tr), x_test=s.embed(s.cfg.strong, te),
                         model=s.cfg.strong)


def students_for(inputs: StudentInputs, student: StudentConfig,
                 finetune: FinetuneConfig | None = None):
    if student.mode == "finetune":
        from aar_ray.w2s.finetune import FinetuneStudents

        ft = finetune or FinetuneConfig()
        if inputs.model:
            ft = replace(ft, strong_model=inputs.model)
        return FinetuneStudents(inputs, ft, student)
    if inputs.x_train is None:
        raise ValueError("head mode needs features in StudentInputs")
    return HeadStudents(inputs.x_train, inputs.x_test, inputs.n_classes, student, inputs.seed)


def run_method(method: str, params: dict[str, Any] | None, inputs: StudentInputs,
               student: StudentConfig, finetune: FinetuneConfig | None = None) -> np.ndarray:
    """The untrusted half of a trial: a method trains students from weak labels only and
    returns test-split probabilities. Validates everything before any training starts."""
    return run_method_instance(make_method(method, params), inputs, student, finetune)


def run_method_instance(m: Method, inputs: StudentInputs, student: StudentConfig,
                        finetune: FinetuneConfig | None = None) -> np.ndarray:
    check_mode(m, student.mode)
    ctx = MethodContext(inputs.weak, students_for(inputs, student, finetune),
                        np.random.default_rng(inputs.seed))
    probs = np.asarray(m.run(ctx), dtype=np.float32)
    n_test = len(inputs.x_test if inputs.x_test is not None else inputs.texts_test)
    if probs.shape != (n_test, inputs.n_classes) or not np.isfinite(probs).all():
        raise ValueError(f"method {m.name} returned predictions of shape {probs.shape}; "
                         f"expected finite ({n_test}, {inputs.n_classes})")
    return probs


def ceiling(s: Setting, seed: int, student: StudentConfig,
            finetune: FinetuneConfig | None = None) -> np.ndarray:
    """The student trained on the unlabelled split's true labels: test probabilities, cached."""
    key = s.key("ceiling", s.cfg.strong, seed, asdict(student),
                finetune.recipe() if student.mode == "finetune" and finetune else None)
    path = s.cache_dir / "ceiling" / f"{key}.npz"

    def compute() -> dict[str, np.ndarray]:
        sp = s.splits(seed)
        truth = one_hot(s.data.labels[sp.unlabelled], s.n_classes)
        inputs = student_inputs(s, seed, student.mode, weak=truth)
        return {"test": run_method("vanilla", None, inputs, student, finetune)}

    return _cached(path, compute)["test"]


@dataclass
class SeedScore:
    seed: int
    weak_acc: float
    ceiling_acc: float
    transfer_acc: float
    pgr: float | None


def seed_correct(s: Setting, seed: int, probs: np.ndarray, student: StudentConfig,
                 finetune: FinetuneConfig | None = None) -> tuple[np.ndarray, ...]:
    """Trusted: was each of the seed's test items right for the method, the teacher and the
    ceiling? The 0/1 arrays every PGR estimate is built from."""
    labels = s.data.labels[s.splits(seed).test]
    return tuple(np.asarray(p).argmax(1) == labels for p in (
        probs, teacher(s, seed)["test"], ceiling(s, seed, student, finetune)))


@dataclass
class TrialConfig:
    setting: SettingConfig
    method: str = "vanilla"
    params: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    student: StudentConfig = field(default_factory=StudentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class TrialResult:
    config: TrialConfig
    predictions: dict[int, np.ndarray]
    correct: dict[int, tuple[np.ndarray, ...]]  # seed -> (transfer, weak, ceiling) 0/1

    @property
    def seeds(self) -> list[SeedScore]:
        out = []
        for seed, arrays in sorted(self.correct.items()):
            t, w, c = (float(a.mean()) for a in arrays)
            out.append(SeedScore(seed, w, c, t, pgr.pgr(t, w, c)))
        return out

    def summary(self) -> dict[str, Any]:
        """Per-seed accuracies, their mean ± SE, and PGR by the one estimator (pooled over
        seeds, seed x item SE and 95% CI)."""
        def ms(key: str) -> dict[str, float | None]:
            mean, se = pgr.mean_se([getattr(r, key) for r in self.seeds])
            return {"mean": mean, "se": se}

        t, w, c = zip(*(self.correct[s] for s in sorted(self.correct)), strict=True)
        est = pgr.pgr_ci(t, w, c)
        return {"setting": self.config.setting.label, "method": self.config.method,
                "params": self.config.params, "per_seed": [asdict(r) for r in self.seeds],
                **{k: ms(k) for k in ("weak_acc", "ceiling_acc", "transfer_acc")},
                "pgr": dict(zip(("mean", "se", "ci_lo", "ci_hi"),
                                map(pgr.finite, (est.mean, est.se, est.lo, est.hi)), strict=True))}


def run_trial(cfg: TrialConfig, cache_dir: Path | None = None,
              predict: Callable[[StudentInputs], np.ndarray] | None = None) -> TrialResult:
    """A whole trial in one trusted process (the CLI's `aar trial`): every seed end to end.
    `predict` replaces the built-in method (`aar trial --method-file`: a sandboxed one)."""
    if predict is None:
        make_method(cfg.method, cfg.params, cfg.student.mode)  # fail before loading anything
        predict = partial(run_method, cfg.method, cfg.params, student=cfg.student,
                          finetune=cfg.finetune)
    s = Setting.load(cfg.setting, cache_dir, cfg.finetune)
    preds, correct = {}, {}
    for seed in cfg.seeds:
        inputs = student_inputs(s, seed, cfg.student.mode)
        preds[seed] = predict(inputs)
        correct[seed] = seed_correct(s, seed, preds[seed], cfg.student, cfg.finetune)
    return TrialResult(cfg, preds, correct)
