"""The strong student behind one small interface, so every method runs in both modes.

A method asks a `StudentFactory` for fresh students and trains each with targets, per-example
weights and optionally its own loss, training length (`epochs`) and `EarlyStopping`;
`HeadStudent` trains a torch head on frozen features here, `finetune.FinetuneStudent` fine-tunes
the transformer on Ray Train with the same calls.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from aar_ray.config import ConfigError, StudentConfig

# loss(logits (b, C), targets (b, C), weights (b,), progress in [0, 1]) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
# criterion(the student's probabilities (n_train, C) on the unlabelled split) -> score, higher
# is better; it sees the weak-labelled split only, so it can use weak labels, never the truth
Criterion = Callable[[np.ndarray], float]
MAX_EPOCHS = 1000


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                       progress: float = 0.0) -> torch.Tensor:
    per_example = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
    return (per_example * weights).sum() / weights.sum().clamp(min=1e-8)


def _check_int(value: Any, where: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: expected an integer in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a `fit` once `criterion`, evaluated after every epoch, has not improved by more than
    `min_delta` for `patience` epochs in a row; then keep the best epoch's weights
    (`restore_best`) or the last ones."""

    criterion: Criterion
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if not callable(self.criterion):
            raise ConfigError(f"EarlyStopping.criterion: expected a callable "
                              f"(probabilities on the unlabelled split -> float), "
                              f"got {self.criterion!r}")
        _check_int(self.patience, "EarlyStopping.patience", 1, MAX_EPOCHS)
        if (isinstance(self.min_delta, bool) or not isinstance(self.min_delta, int | float)
                or not math.isfinite(self.min_delta) or self.min_delta < 0):
            raise ConfigError(f"EarlyStopping.min_delta: expected a finite number >= 0, "
                              f"got {self.min_delta!r}")
        if not isinstance(self.restore_best, bool):
            raise ConfigError(f"EarlyStopping.restore_best: expected a boolean, "
                              f"got {self.restore_best!r}")


class Stopper:
    """The early-stopping rule, shared by both student modes: feed it one score per epoch."""

    def __init__(self, rule: EarlyStopping) -> None:
        self.rule, self.best, self.best_epoch, self.stale = rule, -math.inf, 0, 0
        self.best_state: Any = None

    def update(self, epoch: int, probs: np.ndarray, snapshot: Callable[[], Any]) -> bool:
        """Score epoch `epoch` (1-based) from its train-split probabilities; True = stop now."""
        value = self.rule.criterion(probs)
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"early-stopping criterion returned {value!r} after epoch {epoch}; "
                             "it must return a finite number (higher is better)")
        if score > self.best + self.rule.min_delta:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            if self.rule.restore_best:
                self.best_state = snapshot()
        else:
            self.stale += 1
        return self.stale >= self.rule.patience


def check_fit_args(epochs: int | None, early_stopping: EarlyStopping | None) -> None:
    """Typed checks of `Student.fit`'s training-length arguments, the same in both modes."""
    if epochs is not None:
        _check_int(epochs, "fit(epochs=...)", 1, MAX_EPOCHS)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise ConfigError(f"fit(early_stopping=...): expected an EarlyStopping or None, "
                          f"got {type(early_stopping).__name__}")


def weak_agreement(weak: np.ndarray, idx: np.ndarray) -> Criterion:
    """A criterion: the share of examples `idx` on which the student's argmax agrees with the
    weak labels (train those examples out with weight 0 so that this measures generalisation)."""
    idx = np.asarray(idx, dtype=int)
    if len(idx) == 0:
        raise ConfigError("weak_agreement: needs at least one held-out example")
    target = np.asarray(weak)[idx].argmax(axis=1)
    return lambda probs: float((np.asarray(probs)[idx].argmax(axis=1) == target).mean())


@dataclass(frozen=True)
class StudentInputs:
    """Everything a trial worker may see for one seed: no ground truth."""

    seed: int
    n_classes: int
    weak: np.ndarray  # (n_train, C) teacher's soft labels on the unlabelled split
    x_train: np.ndarray | None = None  # head mode: frozen strong features
    x_test: np.ndarray | None = None
    texts_train: list[str] | None = None  # finetune mode: raw texts
    texts_test: list[str] | None = None
    model: str = ""  # the strong model these inputs are for (finetune mode loads it)


class Student(Protocol):
    epochs_run: int  # epochs the last fit trained (fewer than asked when it stopped early)
    best_epoch: int  # the epoch whose weights the student keeps

    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None, *, epochs: int | None = None,
            early_stopping: EarlyStopping | None = None) -> None:
        """Train from scratch on the unlabelled split with soft `targets` (n, C), for `epochs`
        (default: the mode's configured epochs), stopping early if `early_stopping` says so.
        The loss's `progress` runs over the `epochs` asked for."""

    def predict(self, split: str) -> np.ndarray:
        """Class probabilities (n, C) on split 'train' (the unlabelled split) or 'test'."""


class StudentFactory(Protocol):
    mode: str  # "head" or "finetune"
    epochs: int  # a fit's default training length in this mode
    n_train: int
    n_classes: int

    def new(self, seed_offset: int = 0) -> Student:
        """A fresh, untrained student; `seed_offset` varies its initialisation."""

    def features(self, split: str) -> np.ndarray:
        """The frozen strong features (n, d) of split 'train' or 'test'; head mode only."""


class HeadStudent:
    """A linear (hidden=0) or one-hidden-layer MLP head on frozen features."""

    def __init__(self, x_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                 cfg: StudentConfig, seed: int) -> None:
        self.x = {"train": torch.as_tensor(x_train, dtype=torch.float32),
                  "test": torch.as_tensor(x_test, dtype=torch.float32)}
        self.cfg, self.seed, self.n_classes = cfg, seed, n_classes
        self.model: torch.nn.Module | None = None
        self.epochs_run = self.best_epoch = 0

    def _build(self) -> torch.nn.Module:
        d, c, h = self.x["train"].shape[1], self.n_classes, self.cfg.hidden
        if h == 0:
            return torch.nn.Linear(d, c)
        return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, c))

    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None, *, epochs: int | None = None,
            early_stopping: EarlyStopping | None = None) -> None:
        check_fit_args(epochs, early_stopping)
        epochs = self.cfg.epochs if epochs is None else epochs
        stopper = Stopper(early_stopping) if early_stopping is not None else None
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        model = self._build()
        opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)
        x, n = self.x["train"], len(self.x["train"])
        y = torch.as_tensor(targets, dtype=torch.float32)
        w = torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        loss_fn = loss or soft_cross_entropy
        steps_per_epoch = max(1, -(-n // self.cfg.batch_size))
        total = epochs * steps_per_epoch
        step = 0
        model.train()
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, self.cfg.batch_size):
                idx = perm[i:i + self.cfg.batch_size]
                if w[idx].sum() <= 0:
                    step += 1
                    continue
                value = loss_fn(model(x[idx]), y[idx], w[idx], step / total)
                opt.zero_grad()
                value.backward()
                opt.step()
                step += 1
            self.epochs_run = self.best_epoch = epoch
            if stopper is not None:
                with torch.no_grad():
                    probs = torch.softmax(model(x), dim=-1).numpy()
                if stopper.update(epoch, probs, lambda: copy.deepcopy(model.state_dict())):
                    break
        if stopper is not None and stopper.rule.restore_best:
            model.load_state_dict(stopper.best_state)
            self.best_epoch = stopper.best_epoch
        self.model = model.eval()

    def predict(self, split: str) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("predict() before fit()")
        with torch.no_grad():
            return torch.softmax(self.model(self.x[split]), dim=-1).numpy()


class HeadStudents:
    """Fresh heads on the same frozen features; also offers the features themselves."""

    mode = "head"

    def __init__(self, x_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                 cfg: StudentConfig, seed: int) -> None:
        self.x_train, self.x_test = x_train, x_test
        self.n_train, self.n_classes = len(x_train), n_classes
        self.cfg, self.seed, self.epochs = cfg, seed, cfg.epochs

    def new(self, seed_offset: int = 0, *, hidden: int | None = None,
            weight_decay: float | None = None) -> HeadStudent:
        """`hidden` (0 = a linear head) and `weight_decay` override the configured head."""
        cfg = self.cfg
        if hidden is not None:
            _check_int(hidden, "new(hidden=...)", 0, 65536)
            cfg = replace(cfg, hidden=hidden)
        if weight_decay is not None:
            if (isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float)
                    or not math.isfinite(weight_decay) or weight_decay < 0):
                raise ConfigError(f"new(weight_decay=...): expected a finite number >= 0, "
                                  f"got {weight_decay!r}")
            cfg = replace(cfg, weight_decay=float(weight_decay))
        return HeadStudent(self.x_train, self.x_test, self.n_classes, cfg,
                           self.seed * 1000 + seed_offset)

    def features(self, split: str) -> np.ndarray:
        if split not in ("train", "test"):
            raise ConfigError(f"features({split!r}): split must be 'train' or 'test'")
        return self.x_train if split == "train" else self.x_test


def one_hot(probs_or_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Hard targets from class probabilities (n, C) or class ids (n,)."""
    a = np.asarray(probs_or_labels)
    ids = a.argmax(axis=1) if a.ndim == 2 else a.astype(int)
    return np.eye(n_classes, dtype=np.float32)[ids]
