"""Launching fine-tuning runs on Ray Train: this package's one job.

The science (`aar_ray.w2s.finetune`) describes a run as a `FitJob` and never imports Ray;
`install()` makes Ray Train the launcher of every run in the calling process. Each process that
may fine-tune calls it once: the scorer, trial workers, the CLI and the jobs.
"""
from __future__ import annotations

from aar_ray.w2s.finetune import FitJob, FitResult, use_trainer


def install() -> None:
    """Cheap: Ray is imported at the first fit, not here."""
    use_trainer(_fit)


def _fit(job: FitJob) -> FitResult:
    from aar_ray.train.launcher import fit

    return fit(job)
