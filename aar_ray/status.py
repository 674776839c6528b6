"""`aar status`: a campaign's progress in plain text, from its directory (read-only SQLite, works
while the campaign runs or after it ended) or from the live actors of a running cluster.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aar_ray import connect
from aar_ray.brains.base import total_tokens
from aar_ray.errors import ConfigError
from aar_ray.observe import operations
from aar_ray.results import records

STATUSES = ("queued", "running", "done", "error")




def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _board(entries: list[dict[str, Any]]) -> list[str]:
    lines = [f"  {'#':>2} {'ΔPGR':>6}  {'agent':<12} {'method':<18} params"]
    for i, b in enumerate(entries, 1):
        lines.append(f"  {i:>2} {_fmt(b['delta']):>6}  {b['agent']:<12} {b['method']:<18} "
                     f"{json.dumps(b['params'], sort_keys=True)}")
    return lines if entries else ["  (nothing shown yet)"]


def campaign_text(campaign_dir: str | Path, top: int = 10) -> str:
    """Progress of the campaign in `campaign_dir`, from its files only."""
    d = records.campaign_dir(campaign_dir)
    trials, posts = records.queued_trials(d), records.posts(d)
    shown = [{"agent": s["agent"], "delta": s["shown"], "method": s["method"],
              "params": s["params"]} for s in records.submissions(d)]
    subs: dict[str, int] = {}
    best: dict[str, float] = {}
    for s in shown:
        subs[s["agent"]] = subs.get(s["agent"], 0) + 1
        if s["delta"] is not None:
            best[s["agent"]] = max(s["delta"], best.get(s["agent"], s["delta"]))
    board = sorted((s for s in shown if s["delta"] is not None),
                   key=lambda s: -s["delta"])[:top]
    n_events = len(records.events(d))
    usage = {a["agent"]: a.get("usage") or {} for a in records.agents(d)}

    counts = {s: sum(t["status"] == s for t in trials) for s in STATUSES}
    agents = sorted({t["agent"] for t in trials} | set(usage) | {p["author"] for p in posts})
    lines = [f"campaign {d.name}  ({d})",
             "trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + f"   (of which {sum(t['kind'] == 'control' for t in trials)} teacher-use "
             f"controls, {sum(t['kind'] == 'confirm' for t in trials)} confirmation runs)"
             + f"   integrity events: {n_events}",
             "",
             f"  {'agent':<12} {'trials':>6} {'done':>5} {'err':>4} {'subs':>5} {'posts':>5} "
             f"{'best shown':>10} {'tokens':>10} {'dollars':>8}"]
    for a in agents:
        # controls run under their trial's agent id and are counted above, not here; the
        # confirmation runs are the `confirm` row's, so the rows and the header agree
        mine = [t for t in trials if t["agent"] == a and t["kind"] != "control"]
        u = usage.get(a) or {}
        tok = total_tokens(u)
        lines.append(
            f"  {a:<12} {len(mine):>6} {sum(t['status'] == 'done' for t in mine):>5} "
            f"{sum(t['status'] == 'error' for t in mine):>4} {subs.get(a, 0):>5} "
            f"{sum(p['author'] == a for p in posts):>5} {_fmt(best.get(a)):>10} "
            f"{(f'{tok:,}' if u else '-'):>10} "
            f"{(_fmt(u.get('dollars'), 4) if u else '-'):>8}")
    total = sum((u or {}).get("dollars", 0) or 0 for u in usage.values())
    lines += ["", f"public leaderboard (top {top}, ΔPGR over vanilla as shown to agents):",
              *_board(board),
              "", f"total Claude cost: ${total:.4f}"
              + ("" if any(usage.values()) else " (offline brain)"), *_operations(d)]
    return "\n".join(lines)


def _operations(d: Path, latest: int = 3) -> list[str]:
    """The internal-error count and the latest entries of the operations log."""
    entries = operations.read(d)
    internal = sum(e.get("kind") == "tool_internal_error" for e in entries)
    lines = [f"internal errors: {internal}   operations log entries: {len(entries)}"
             + (f" ({d / operations.FILE})" if entries else "")]
    for e in entries[-latest:]:
        lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(e.get('at', 0)))} "
                     f"{e.get('id', '?')} {e.get('kind', '?')} {e.get('agent', '-')} "
                     f"{e.get('tool', '-')}: {operations.headline(e)[:120]}")
    return lines


class MissingActor(RuntimeError):
    pass


def live_text(top: int = 10) -> str:
    """Progress from the live actors `trials`, `scorer` and `forum` (Ray must be initialised)."""
    import ray

    from aar_ray.lab import NAMESPACE

    handles = {}
    for name in ("trials", "scorer", "forum"):
        try:
            handles[name] = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            raise MissingActor(f"no live actor {name!r} in namespace {NAMESPACE!r}: is a "
                               "campaign running on this cluster?") from None
    q, s, f = handles["trials"], handles["scorer"], handles["forum"]
    counts, trials, board, n_posts = ray.get(
        [q.counts.remote(), q.list.remote(), s.leaderboard.remote("public", top),
         f.count.remote()], timeout=30)
    per_agent: dict[str, dict[str, int]] = {}
    for t in trials:
        row = per_agent.setdefault(t["agent"], dict.fromkeys(STATUSES, 0))
        row[t["status"]] = row.get(t["status"], 0) + 1
    lines = ["live campaign (namespace aar)",
             "trials: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in STATUSES)
             + f"   forum posts: {n_posts}", "",
             f"  {'agent':<12} " + " ".join(f"{k:>7}" for k in STATUSES)]
    for a, row in sorted(per_agent.items()):
        lines.append(f"  {a:<12} " + " ".join(f"{row.get(k, 0):>7}" for k in STATUSES))
    lines += ["", f"public leaderboard (top {top}, ΔPGR over vanilla):", *_board(board)]
    return "\n".join(lines)


def _loop(render: Callable[[], str], watch: bool, interval: float) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    def frame() -> Text:
        return Text(time.strftime("%H:%M:%S ") + f"(every {interval:g}s, Ctrl-C to stop)\n"
                    + render())

    try:
        if not watch:
            print(render())
            return 0
        # rich redraws in place, and falls back to plain appends where stdout is no terminal
        with Live(frame(), console=Console(), auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except (FileNotFoundError, MissingActor) as e:
        print(f"aar status: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def status(campaign_dir: str | None, address: str | None, watch: bool = False,
           interval: float = 2.0) -> int:
    """Print progress once, or every `interval` seconds until Ctrl-C with `watch`. Reads the
    campaign directory if given, else the live actors at `address` (or RAY_ADDRESS).
    Returns 0, 1 (no live campaign, or Ray unreachable) or 2 (usage); a directory that is not
    a campaign raises a RecordsError, which `aar` reports as bad input (2), as `aar report`."""
    interval = max(0.2, float(interval))
    try:
        if campaign_dir:
            return _loop(lambda: campaign_text(campaign_dir), watch, interval)
        where = connect.resolve(address, find_local=True)  # as `ray status` finds one
        if where.kind == "local":
            print("aar status: give a campaign directory, or --address / RAY_ADDRESS of a "
                  "running cluster (none was found on this machine)", file=sys.stderr)
            return 2
        if where.kind == "dashboard":
            if watch:
                raise ConfigError("aar status --watch needs a driver connection: give the GCS "
                                  "address (HEAD:6379) or ray://HEAD:10001, not the dashboard")
            return via_jobs_api(where.value)
        import ray

        from aar_ray.lab import NAMESPACE

        started = not ray.is_initialized()
        if started:
            try:
                connect.join(where, namespace=NAMESPACE, log_to_driver=False,
                             logging_level="ERROR")
            except Exception as e:  # unreachable cluster, wrong address, auth mismatch
                print(f"aar status: cannot connect to Ray at {where.value}: "
                      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                      file=sys.stderr)
                return 1
        try:
            return _loop(live_text, watch, interval)
        finally:
            if started:
                ray.shutdown()
    except KeyboardInterrupt:
        return 0


def via_jobs_api(url: str, timeout_s: float = 300) -> int:
    """`aar status` at a dashboard URL: the dashboard offers the Jobs API, not a driver
    connection, so this command runs once more as a Ray job on the cluster (where RAY_ADDRESS
    is the GCS) and prints what it printed; exit 0 if the job succeeded, else 1."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    connect.auth_mode(embedded=False)
    client = JobSubmissionClient(url)
    job = client.submit_job(entrypoint="python -m aar_ray.cli status",
                            runtime_env={"env_vars": {connect.AUTH_ENV: os.environ[
                                connect.AUTH_ENV]}})
    deadline = time.time() + timeout_s
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    try:
        while client.get_job_status(job) not in terminal and time.time() < deadline:
            time.sleep(0.5)
    finally:
        if client.get_job_status(job) not in terminal:
            client.stop_job(job)
    print(client.get_job_logs(job).rstrip())
    return 0 if client.get_job_status(job) == JobStatus.SUCCEEDED else 1
