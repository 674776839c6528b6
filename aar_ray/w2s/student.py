"""The strong student behind one small interface, so every method runs in both modes.

A method asks a `StudentFactory` for fresh students and trains each with targets, per-example
weights and optionally its own loss; `HeadStudent` trains a torch head on frozen features here,
`finetune.FinetuneStudent` fine-tunes the transformer on Ray Train with the same calls.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from aar_ray.config import StudentConfig

# loss(logits (b, C), targets (b, C), weights (b,), progress in [0, 1]) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                       progress: float = 0.0) -> torch.Tensor:
    per_example = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
    return (per_example * weights).sum() / weights.sum().clamp(min=1e-8)


class Student(Protocol):
    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None) -> None:
        """Train from scratch on the unlabelled split with soft `targets` (n, C)."""

    def predict(self, split: str) -> np.ndarray:
        """Class probabilities (n, C) on split 'train' (the unlabelled split) or 'test'."""


class StudentFactory(Protocol):
    n_train: int
    n_classes: int

    def new(self, seed_offset: int = 0) -> Student:
        """A fresh, untrained student; `seed_offset` varies its initialisation."""


class HeadStudent:
    """A linear (hidden=0) or one-hidden-layer MLP head on frozen features."""

    def __init__(self, x_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                 cfg: StudentConfig, seed: int) -> None:
        self.x = {"train": torch.as_tensor(x_train, dtype=torch.float32),
                  "test": torch.as_tensor(x_test, dtype=torch.float32)}
        self.cfg, self.seed, self.n_classes = cfg, seed, n_classes
        self.model: torch.nn.Module | None = None

    def _build(self) -> torch.nn.Module:
        d, c, h = self.x["train"].shape[1], self.n_classes, self.cfg.hidden
        if h == 0:
            return torch.nn.Linear(d, c)
        return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, c))

    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None) -> None:
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
        total = self.cfg.epochs * steps_per_epoch
        step = 0
        model.train()
        for _ in range(self.cfg.epochs):
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
        self.model = model.eval()

    def predict(self, split: str) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("predict() before fit()")
        with torch.no_grad():
            return torch.softmax(self.model(self.x[split]), dim=-1).numpy()


class HeadStudents:
    """Fresh heads on the same frozen features; also offers the features themselves."""

    def __init__(self, x_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                 cfg: StudentConfig, seed: int) -> None:
        self.x_train, self.x_test = x_train, x_test
        self.n_train, self.n_classes = len(x_train), n_classes
        self.cfg, self.seed = cfg, seed

    def new(self, seed_offset: int = 0) -> HeadStudent:
        return HeadStudent(self.x_train, self.x_test, self.n_classes, self.cfg,
                           self.seed * 1000 + seed_offset)


def one_hot(probs_or_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Hard targets from class probabilities (n, C) or class ids (n,)."""
    a = np.asarray(probs_or_labels)
    ids = a.argmax(axis=1) if a.ndim == 2 else a.astype(int)
    return np.eye(n_classes, dtype=np.float32)[ids]
