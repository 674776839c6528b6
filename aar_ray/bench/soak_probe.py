"""What the soak benchmark measures and checks, from outside the lab: samples of the processes
and files a campaign holds (`sample`), the end checks read from the campaign's own records
(`end_checks`), growth rates (`growth_per_h`) and the plots (`svg_plot`, no plotting library
needed)."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aar_ray.observe import operations
from aar_ray.results import records

LAB_ACTORS = (b"ScorerActor", b"ForumActor", b"TrialQueueActor", b"ResearcherActor")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, theirs, ...); zombies are already dead."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, IndexError, ValueError):
                continue
            if state != "Z":
                children.setdefault(int(ppid), []).append(int(proc.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def still_running(pids: Callable[[], list[int]], grace_s: float = 30.0) -> list[int]:
    """`pids()` once it is empty, or after `grace_s` (a loaded machine tears a cluster down
    slowly): what is left then has outlived its campaign."""
    end = time.monotonic() + grace_s
    while (left := pids()) and time.monotonic() < end:
        time.sleep(0.5)
    return left


def lab_processes(pids: list[int]) -> dict[int, str]:
    """The processes among `pids` that host a lab actor (named in their command line), with
    the actor's class."""
    out = {}
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        name = next((n for n in LAB_ACTORS if n in cmd), None)
        if name is not None:
            out[pid] = name.decode()
    return out


def _pss_kib(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in rollup.splitlines()
                 if line.startswith("Pss:")), 0)


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tree_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total / 2**20


def sample(root_pid: int, campaign_dir: Path | None, session_dir: Path, t: float
           ) -> dict[str, Any]:
    """One sample: PSS (shared pages counted once) and open fds of every process below
    `root_pid` (the cluster's and the campaign drivers'), the process count, the SQLite and
    WAL sizes and the Ray session directory's size, all in MiB."""
    pids = descendants(root_pid)
    db = {f.name: f.stat().st_size / 2**20 for f in sorted(
        (campaign_dir or Path("/nonexistent")).glob("*.sqlite*"))}
    lab = lab_processes(pids)
    by_actor = {n.decode(): round(sum(_pss_kib(p) for p, c in lab.items() if c == n.decode())
                                  / 1024, 1) for n in LAB_ACTORS}
    return {"t_s": round(t, 1), "pss_mib": round(sum(map(_pss_kib, pids)) / 1024, 1),
            "lab_pss_mib": round(sum(by_actor.values()), 1), "lab_pss_by_actor": by_actor,
            "fds": sum(map(_fds, pids)), "processes": len(pids),
            "sqlite_mib": round(sum(v for k, v in db.items() if k.endswith(".sqlite")), 3),
            "wal_mib": round(sum(v for k, v in db.items() if k.endswith("-wal")), 3),
            "ray_session_mib": round(tree_mib(session_dir), 1)}


def growth_per_h(samples: list[dict[str, Any]], key: str, after_s: float,
                 before_s: float = float("inf")) -> float | None:
    """The least-squares slope of `key` over the samples taken in [after_s, before_s), per
    hour."""
    pts = [(s["t_s"], s[key]) for s in samples if after_s <= s["t_s"] < before_s]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return round(3600 * sum((x - mx) * (y - my) for x, y in pts) / var, 2) if var else None


def _tool_results(campaign_dir: Path, tool: str) -> dict[str, list[Any]]:
    """agent -> the parsed results of its successful calls of `tool`, from its tool log."""
    out: dict[str, list[Any]] = {}
    for f in sorted((campaign_dir / "agents").glob("*/tool_calls.jsonl")):
        for line in f.read_text().splitlines():
            try:
                e = json.loads(line)
                result = json.loads(e["result"]) if e["tool"] == tool and not e.get("error") \
                    else None
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(result, dict):
                out.setdefault(f.parent.name, []).append(result)
    return out


def end_checks(campaign_dir: Path) -> dict[str, int]:
    """Read from the campaign's records after it ended:

    - lost_trials: trials left queued or running, and finished agent or baseline trials with
      no score recorded by the scorer (its table keys on trial_id: never two);
    - lost_posts: posts an agent was told were stored that the forum lacks, and posts whose
      citations are not all in the forum's citation index;
    - duplicate_requests: trials of an agent beyond those its tool log ever saw returned
      (a replayed step that ran its trial again), confirmation runs beyond one per candidate,
      and, likewise, posts and replies whose author was never given their id back."""
    trials = records.queued_trials(campaign_dir)
    scored = {s["trial_id"] for s in _rows(campaign_dir / records.SCORER,
                                           "SELECT trial_id FROM recorded")}
    lost = sum(t["status"] in ("queued", "running") for t in trials)
    lost += sum(t["status"] == "done" and t["kind"] in ("agent", "baseline")
                and t["trial_id"] not in scored for t in trials)
    posts = records.posts(campaign_dir)
    stored = {p["id"] for p in posts}
    told: dict[str, set] = {}  # author -> the post ids the forum gave back to it
    for tool in ("post", "reply"):
        for agent, rs in _tool_results(campaign_dir, tool).items():
            told.setdefault(agent, set()).update(r.get("post_id") for r in rs)
    lost_posts = len(set().union(*told.values()) - {None} - stored) if told else 0
    cites = _rows(campaign_dir / records.FORUM, "SELECT post_id, trial_id FROM cites")
    for p in posts:
        want = set(json.loads(p["cites"] or "[]"))
        if want != {c["trial_id"] for c in cites if c["post_id"] == p["id"]}:
            lost_posts += 1
    seen = {a: {r.get("trial_id") for r in rs}
            for a, rs in _tool_results(campaign_dir, "run_trial").items()}
    dup = 0
    for agent in {t["agent"] for t in trials if t["kind"] == "agent"}:
        ran = {t["trial_id"] for t in trials if t["kind"] == "agent" and t["agent"] == agent}
        dup += len(ran - seen.get(agent, set()))
    confirm = [t["parent"] for t in trials if t["kind"] == "confirm"]
    dup += len(confirm) - len(set(confirm))
    dup += sum(p["id"] not in told.get(p["author"], set()) for p in posts)
    return {"lost_trials": lost, "lost_posts": lost_posts, "duplicate_requests": dup}


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    db = records.connect(path)
    try:
        return [dict(r) for r in db.execute(sql).fetchall()]
    finally:
        db.close()


def entries_after(campaign_dir: Path, kind: str, t: float, **match: Any) -> list[dict]:
    """Operations-log entries of `kind` written at or after `t` whose fields contain `match`
    (a value matches a field that equals it or, for text, contains it)."""
    def fits(e: dict[str, Any]) -> bool:
        return all(e.get(k) == v or (isinstance(e.get(k), str) and str(v) in e[k])
                   for k, v in match.items())

    return [e for e in operations.read(campaign_dir)
            if e["kind"] == kind and e["at"] >= t and fits(e)]


def svg_plot(samples: list[dict[str, Any]], keys: list[str], title: str, faults: list[dict]
             ) -> str:
    """A small line plot of `keys` over time (minutes), faults marked as vertical lines."""
    w, h, m = 640, 260, 48
    xs = [s["t_s"] / 60 for s in samples] or [0.0]
    ys = [s[k] for s in samples for k in keys] or [0.0]
    x1, y1 = max(max(xs), 1e-9), max(max(ys), 1e-9) * 1.1

    def px(x: float, y: float) -> str:
        return f"{m + (w - 2 * m) * x / x1:.1f},{h - m - (h - 2 * m) * y / y1:.1f}"

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11">', f'<rect width="{w}" height="{h}" '
           'fill="white"/>', f'<text x="{m}" y="16" font-size="13">{title}</text>',
           f'<polyline points="{px(0, y1)} {px(0, 0)} {px(x1, 0)}" fill="none" stroke="#444"/>',
           f'<text x="{m - 4}" y="{h - m + 14}">0</text>',
           f'<text x="{w - m - 30}" y="{h - m + 14}">{x1:.1f} min</text>',
           f'<text x="4" y="{m}">{y1:.0f}</text>']
    for f in faults:
        x = px(f["at_s"] / 60, 0).split(",")[0]
        out.append(f'<line x1="{x}" x2="{x}" y1="{m}" y2="{h - m}" stroke="#bbb" '
                   f'stroke-dasharray="3,3"><title>{f["fault"]}</title></line>')
    for i, k in enumerate(keys):
        pts = " ".join(px(s["t_s"] / 60, s[k]) for s in samples)
        out += [f'<polyline points="{pts}" fill="none" stroke="{colours[i % 4]}"/>',
                f'<text x="{w - m - 150}" y="{m + 14 * i}" fill="{colours[i % 4]}">{k}</text>']
    return "\n".join(out + ["</svg>"]) + "\n"
