"""The `aar` command's exit codes, and the one line each expected failure becomes.

    0  done
    1  failure: Ray or the Claude API could not be reached, or answered with an error; the
       campaign's disk is full
    2  bad input: a ConfigError or another refusal (a flag, a config field, a directory)
  130  stopped (Ctrl-C or SIGTERM); `aar run --resume DIR` continues

Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import sys

OK, FAILURE, BAD_INPUT, STOPPED = 0, 1, 2, 130


def _cause(exc: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, out of Ray's wrapper (RayTaskError keeps it as
    `.cause`), so a refusal inside the scorer reads as the refusal it is."""
    while (inner := getattr(exc, "cause", None)) is not None and inner is not exc:
        exc = inner
    return exc


def _unreachable(exc: BaseException) -> bool:
    """Ray or the Claude API could not be reached, or refused the call."""
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(exc, anthropic.APIError):
        return True
    ray_exceptions = sys.modules.get("ray.exceptions")
    return isinstance(exc, ConnectionError) or (
        ray_exceptions is not None and isinstance(exc, ray_exceptions.RaySystemError))


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an expected failure, None for a bug."""
    from aar_ray.errors import Refusal

    cause = _cause(exc)
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, Refusal):
        return BAD_INPUT, f"aar: error: {first}"
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:  # a full disk
        where = f" ({cause.filename})" if cause.filename else ""
        return FAILURE, f"aar: failed: no space left on device{where}: {cause.strerror}"
    if _unreachable(cause):
        return FAILURE, f"aar: failed: {type(cause).__name__}: {first}"
    return None
