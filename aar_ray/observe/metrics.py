"""The lab's Prometheus metrics through `ray.util.metrics`: Ray exports them (prefixed `ray_`)
on every node's metrics export port next to its own, so the dashboard/Grafana see the campaign.

Each function is a no-op outside a Ray driver or worker and never raises: metrics must never
break a campaign. Metric objects are created lazily, once per process and Ray job (a driver that
calls `ray.shutdown()` and `ray.init()` again gets fresh ones).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

# name -> (kind, description, tag keys); kind "histogram" uses LATENCY_BOUNDARIES
SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "aar_trials_total": ("counter", "Trials finished, by agent, method and final status",
                         ("agent", "method", "status")),
    # ASCII only: a non-ASCII description stops Ray 2.60 exporting every gauge (measured)
    "aar_best_shown_delta_pgr": ("gauge", "An agent's best public delta PGR over vanilla, as "
                                 "the Ladder showed it", ("agent",)),
    "aar_submissions_total": ("counter", "Trials submitted to the scorer", ("agent",)),
    "aar_integrity_events_total": ("counter", "Integrity events the scorer recorded", ("kind",)),
    "aar_tokens_total": ("counter", "Claude tokens, by agent and kind (input, output, "
                         "cache_read_input, cache_creation_input)", ("agent", "kind")),
    "aar_dollars_total": ("counter", "Claude API spend in USD", ("agent",)),
    "aar_trial_queue_length": ("gauge", "Trials queued and not yet running", ()),
    "aar_forum_posts_total": ("counter", "Forum posts and replies, by kind", ("kind",)),
    "aar_tool_latency_seconds": ("histogram", "Agent tool call latency", ("tool",)),
    "aar_tool_internal_errors_total": ("counter", "Tool calls that failed with an internal "
                                       "error (a bug; see operations.jsonl)", ("tool",)),
}
LATENCY_BOUNDARIES = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                      600.0]

_lock = threading.Lock()
_metrics: dict[str, Any] = {}
_job: str | None = None
_warned = False


def _get(name: str) -> Any | None:
    """The metric `name` for this process and Ray job, or None when Ray is not initialised."""
    global _job
    import ray

    if not ray.is_initialized():
        return None
    job = ray.get_runtime_context().get_job_id()
    with _lock:
        if job != _job:
            _metrics.clear()
            _job = job
        metric = _metrics.get(name)
        if metric is None:
            from ray.util import metrics

            kind, description, tags = SPECS[name]
            if kind == "counter":
                metric = metrics.Counter(name, description=description, tag_keys=tags)
            elif kind == "gauge":
                metric = metrics.Gauge(name, description=description, tag_keys=tags)
            else:
                metric = metrics.Histogram(name, description=description,
                                           boundaries=LATENCY_BOUNDARIES, tag_keys=tags)
            _metrics[name] = metric
        return metric


def _record(name: str, value: float | int | None, **tags: Any) -> None:
    global _warned
    try:
        if value is None:
            return
        metric = _get(name)
        if metric is None:
            return
        tags = {k: str(v) for k, v in tags.items()}
        kind = SPECS[name][0]
        if kind == "counter":
            if value > 0:  # Ray counters refuse 0 and negative increments
                metric.inc(float(value), tags=tags or None)
        elif kind == "gauge":
            metric.set(float(value), tags=tags or None)
        else:
            metric.observe(float(value), tags=tags or None)
    except Exception as e:  # never let observability break the lab
        if not _warned:
            _warned = True
            log.warning("metric %s not recorded: %r (further failures logged at debug)", name, e)
        else:
            log.debug("metric %s not recorded: %r", name, e)


def trial_finished(agent: str, method: str, status: str) -> None:
    """A trial reached a final status ("done" or "error")."""
    _record("aar_trials_total", 1, agent=agent, method=method, status=status)


def submission_scored(agent: str, best_shown: float | None) -> None:
    """A new submission was scored; `best_shown` is the agent's best public ΔPGR over vanilla
    shown so far (None while the Ladder has shown nothing)."""
    _record("aar_submissions_total", 1, agent=agent)
    _record("aar_best_shown_delta_pgr", best_shown, agent=agent)


def integrity_event(kind: str) -> None:
    _record("aar_integrity_events_total", 1, kind=kind)


def tokens(agent: str, kind: str, n: int) -> None:
    """`n` more tokens of `kind` (input, output, cache_read_input, cache_creation_input)."""
    _record("aar_tokens_total", n, agent=agent, kind=kind)


def dollars(agent: str, usd: float) -> None:
    _record("aar_dollars_total", usd, agent=agent)


def queue_length(n: int) -> None:
    _record("aar_trial_queue_length", n)


def forum_post(kind: str) -> None:
    _record("aar_forum_posts_total", 1, kind=kind)


def tool_latency(tool: str, seconds: float) -> None:
    _record("aar_tool_latency_seconds", seconds, tool=tool)


def tool_internal_error(tool: str) -> None:
    _record("aar_tool_internal_errors_total", 1, tool=tool)
