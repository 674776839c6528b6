"""One self-contained HTML report of a campaign directory: leaderboard, progress over time,
diversity, forum threads, integrity events, the transfer audit and costs.

Inline CSS and SVG only: no script, no external request (a Content-Security-Policy forbids
both), so the file can be mailed, archived or opened offline. Everything an agent wrote is
untrusted and escaped. SQLite files are opened read-only, so a running campaign can be reported.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from aar_ray.brains.base import USAGE_KEYS
from aar_ray.observe import operations
from aar_ray.report_html import CSS, e, interval, num, pval, svg_progress, table, when
from aar_ray.results import records
from aar_ray.results.diversity import diversity
from aar_ray.results.records import json_file
from aar_ray.results.verdict import WORDS
from aar_ray.w2s.methods import catalog

USAGE_LABELS = ("input", "output", "cache read", "cache write")  # of USAGE_KEYS, in order


# ---- data ------------------------------------------------------------------------------------


def load(campaign_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, from the campaign directory alone."""
    d = Path(campaign_dir)
    summary = json_file(d / "summary.json") or {}
    try:
        config = yaml.safe_load((d / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    subs = records.submissions(d)
    for s in subs:
        private = s.pop("private")
        vs = private.get("vs_vanilla") or {}
        s.update(pgr=private.get("pgr"), se=private.get("se"), ci_lo=private.get("ci_lo"),
                 ci_hi=private.get("ci_hi"), per_seed=private.get("per_seed", []),
                 delta=vs.get("delta"), delta_lo=vs.get("lo"), delta_hi=vs.get("hi"),
                 p=vs.get("p"))
    board = summary.get("leaderboard")
    if board is None:
        board = sorted((s for s in subs if s["pgr"] is not None), key=lambda s: -s["pgr"])
    trials = records.queued_trials(d)
    agent_trials = [t for t in trials if t.get("kind", "agent") == "agent"]
    agents = records.agents(d)
    return {
        "dir": d, "name": config.get("name") or d.name, "config": config, "summary": summary,
        "leaderboard": board, "submissions": subs, "trials": trials,
        "diversity": summary.get("diversity") or diversity(agent_trials, catalog()),
        "posts": records.posts(d), "events": records.events(d),
        "operations": operations.read(d),
        "audit": json_file(d / "audit.json"), "agents": agents,
        "directions": {p.parent.name: p.read_text().strip()
                       for p in sorted((d / "agents").glob("*/direction.md"))},
    }


def progress(subs: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per agent: (time, best private PGR so far) at each submission that had a PGR."""
    out: dict[str, list[tuple[float, float]]] = {}
    for s in sorted(subs, key=lambda s: s["submitted_at"] or 0):
        if s["pgr"] is None:
            continue
        series = out.setdefault(s["agent"], [])
        best = max(s["pgr"], series[-1][1]) if series else s["pgr"]
        series.append((s["submitted_at"], best))
    return out


# ---- sections --------------------------------------------------------------------------------


def _flag(flag: Any) -> str:
    """A forum flag (text) or a scorer flag ({"kind": ..., details}); a passed teacher-use
    control is shown as a check, not a warning."""
    if not isinstance(flag, dict):
        return f'<div class="flag">⚑ {e(flag)}</div>'
    kind = flag.get("kind", "flag")
    if kind == "teacher_use":
        ok = not flag.get("ignores_teacher")
        text = (f"teacher-use control: PGR {num(flag.get('control_pgr'))} with shuffled labels, "
                f"drop {num(flag.get('drop'))}"
                + (" (uses the teacher)" if ok else " (ignores the teacher)"))
        return f'<div class="{"ok" if ok else "flag"}">{"✓" if ok else "⚑"} {e(text)}</div>'
    rest = ", ".join(f"{k}={v}" for k, v in flag.items() if k != "kind")
    return f'<div class="flag">⚑ {e(kind)}{": " + e(rest) if rest else ""}</div>'


def _flags(flags: list[Any]) -> str:
    return "".join(_flag(f) for f in flags or [])


def section_header(data: dict[str, Any]) -> str:
    s, cfg = data["summary"], data["config"]
    setting = s.get("setting") or "{task}:{weak}->{strong}".format(
        **{k: (cfg.get("setting") or {}).get(k, "?") for k in ("task", "weak", "strong")})
    counts: dict[str, int] = {}
    for t in data["trials"]:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    base = s.get("baseline") or next((b for b in data["leaderboard"]
                                      if b["agent"] == "baseline"), None)
    best = next((b for b in data["leaderboard"] if b["agent"] != "baseline"), None)
    dollars = sum((a.get("usage") or {}).get("dollars", 0) or 0 for a in data["agents"])
    cards = [("setting", e(setting)), ("agents", str(len(data["agents"]))),
             ("weak acc", num(s.get("weak_acc"))), ("ceiling acc", num(s.get("ceiling_acc"))),
             ("baseline PGR", num(base and base["pgr"])),
             ("best PGR", num(best and best["pgr"])),
             ("trials", " / ".join(f"{n} {e(k)}" for k, n in sorted(counts.items())) or "0"),
             ("duration", f"{s['seconds']:.0f} s" if s.get("seconds") else "running?"),
             ("Claude cost", f"${dollars:.2f}")]
    return (f"<h1>Campaign {e(data['name'])}</h1><div class=\"muted\">{e(data['dir'])} · "
            f"report written {e(when(time.time()))} UTC</div><div class=\"cards\">"
            + "".join(f'<div class="card"><span class="muted">{k}</span><b>{v}</b></div>'
                      for k, v in cards) + "</div>")


def section_verdict(data: dict[str, Any]) -> str:
    """What is real: the pre-registered confirmation on fresh seeds, the audit of the
    confirmed, the exploration's health and the verdict (summary.json; docs/statistics.md)."""
    s = data["summary"]
    if "verdict" not in s:
        return ("<h2>Verdict</h2><p class=\"muted\">Not yet: the confirmation stage runs when "
                "exploration ends.</p>")
    rows = []
    for c in s.get("candidates", []):
        rows.append([e(c["name"]), e(c["method"]),
                     f"<code>{e(json.dumps(c.get('params') or {}, sort_keys=True))}</code>",
                     num(c.get("public_delta")), num(c.get("pgr")),
                     interval(c.get("delta"), c.get("ci_low"), c.get("ci_high")),
                     pval(c.get("p_holm")), "✓" if c.get("confirmed") else "–"])
    audit = []
    for c in s.get("confirmed", []):
        for setting, a in (c.get("audit") or {}).items():
            pts = [None if a.get(k) is None else 100 * a[k]
                   for k in ("delta_acc", "ci_low_acc", "ci_high_acc", "mde_acc")]
            audit.append([e(c.get("name", "")), e(c["method"]), e(setting), num(a.get("pgr")),
                          num(a.get("delta")), interval(*pts[:3]), num(pts[3]),
                          e(a.get("status") or ""), e(WORDS.get(c.get("label"), ""))])
    health = (f"public→private Spearman over {s.get('explored_configurations', 0)} explored "
              f"configurations: {num(s.get('public_private_spearman'))}; largest share of "
              f"trials on one method: {num(s.get('max_method_share'))}; minimum detectable "
              f"ΔPGR of the confirmation: {num(s.get('min_detectable_delta'))}")
    return ("<h2>Verdict</h2><p><b>" + e(s["verdict"]) + "</b></p><p class=\"muted\">"
            + e(health) + "</p><h3>Confirmation (pre-registered, fresh seeds, private split, "
            "Holm over these only)</h3>"
            + table(["", "method", "params", "public ΔPGR", "PGR", "ΔPGR [95% CI]",
                     "p (Holm)", "confirmed"], rows, {3, 4, 5, 6})
            + ("<h3>Transfer audit of the confirmed</h3>"
               + table(["config", "method", "setting", "PGR", "ΔPGR vs vanilla",
                        "Δacc pts [95% CI]", "MDE pts", "non-inferiority", "label"], audit,
                       {3, 4, 5, 6}) if audit else ""))


def section_leaderboard(data: dict[str, Any]) -> str:
    """The exploration's private board: pooled PGR with its seed x item SE and 95% CI, ΔPGR
    over vanilla on the same seeds and items with its CI and (unadjusted) p."""
    board = data["leaderboard"]
    if not board:
        return "<h2>Leaderboard (private split)</h2><p class=\"muted\">No scored submissions.</p>"
    head = ["#", "trial", "agent", "method", "params", "seeds", "PGR [95% CI]", "± SE",
            "ΔPGR vs vanilla [95% CI]", "p", "flags"]
    rows, classes = [], []
    for i, b in enumerate(board, 1):
        rows.append([str(i), f'<code class="id">{e(b["trial_id"])}</code>', e(b["agent"]),
                     e(b["method"]),
                     f"<code>{e(json.dumps(b.get('params') or {}, sort_keys=True))}</code>",
                     str(len(b.get("seeds") or [])),
                     interval(b.get("pgr"), b.get("ci_lo"), b.get("ci_hi")), num(b.get("se")),
                     interval(b.get("delta"), b.get("delta_lo"), b.get("delta_hi")),
                     pval(b.get("p")), _flags(b.get("flags"))])
        classes.append("baseline" if b["agent"] == "baseline" else "")
    note = ("Exploration's numbers, every one computed by the scorer on the private split; "
            "agents only ever saw rounded public ΔPGR. p is unadjusted: the verdict above comes "
            "from the pre-registered confirmation, not from this board.")
    return (f"<details><summary><h2>Leaderboard (private split, {len(board)} entries)</h2>"
            "</summary><p class=\"muted\">" + note + "</p>"
            + table(head, rows, {0, 5, 6, 7, 8, 9}, classes) + "</details>")


def section_progress(data: dict[str, Any]) -> str:
    series = progress(data["submissions"])
    base = series.get("baseline")
    return ("<h2>Best private PGR over time</h2>"
            + svg_progress(series, base[-1][1] if base else None))


def section_diversity(data: dict[str, Any]) -> str:
    div = data["diversity"] or {}
    per_agent = div.get("agents") or {}
    overlap = div.get("mean_method_overlap")
    head = (f"<h2>Diversity</h2><p>{div.get('team_methods', 0)} methods and "
            f"{div.get('team_regions', 0)} parameter regions across the team; mean method "
            f"overlap between agents (Jaccard) {num(overlap, 2)}.</p>")
    rows = [[e(a), str(v.get("n_methods")), str(v.get("n_regions")),
             e(", ".join(v.get("methods") or [])),
             f'<span class="muted">{e(data["directions"].get(a, ""))}</span>']
            for a, v in sorted(per_agent.items())]
    per_agent_table = table(["agent", "methods", "regions", "which", "direction"], rows, {1, 2})
    # trials per (method, agent): where each agent spent its budget
    trials = [t for t in data["trials"] if t.get("kind", "agent") == "agent"]
    agents = sorted({t["agent"] for t in trials})
    methods = sorted({t["method"] for t in trials})
    counts = {(t["method"], t["agent"]): 0 for t in trials}
    for t in trials:
        counts[(t["method"], t["agent"])] += 1
    top = max(counts.values(), default=1)
    matrix = ""
    if agents:
        cells = []
        for m in methods:
            row = [e(m)]
            for a in agents:
                n = counts.get((m, a), 0)
                shade = f"rgba(31,119,180,{0.12 + 0.6 * n / top:.2f})" if n else "transparent"
                row.append(f'<span class="cell" style="background:{shade}">{n or ""}</span>')
            cells.append(row)
        matrix = ("<p class=\"muted\">Trials per method and agent:</p>"
                  + table(["method", *map(e, agents)], cells, set(range(1, len(agents) + 1))))
    return head + per_agent_table + matrix


def section_forum(data: dict[str, Any]) -> str:
    posts = data["posts"]
    scored = {s["trial_id"]: s for s in data["submissions"]}
    method = {t["trial_id"]: t["method"] for t in data["trials"]}
    replies: dict[int, list[dict[str, Any]]] = {}
    for p in posts:
        if p["parent_id"] is not None:
            replies.setdefault(p["parent_id"], []).append(p)
    out = [f"<h2>Forum ({len(posts)} posts)</h2>"]
    if not posts:
        out.append('<p class="muted">No posts.</p>')
    for p in (p for p in posts if p["parent_id"] is None):
        kind = p["kind"] if p["kind"] in ("result", "hypothesis", "insight", "error") else "other"
        tags = json.loads(p["tags"] or "[]")
        cites = []
        for tid in json.loads(p["cites"] or "[]"):
            s = scored.get(tid)
            score = (f"public {num(s['shown'], 2)}, private {num(s['pgr'])}" if s
                     else "not scored")
            cites.append(f"<code>{e(tid)}</code> {e(method.get(tid, '?'))} ({score})")
        out.append(
            f'<div class="post" id="post-{int(p["id"])}"><div><span class="kind kind-{kind}">'
            f'{e(p["kind"])}</span><b>{e(p["title"])}</b> <span class="muted">#{int(p["id"])}'
            f' by {e(p["author"])} at {e(when(p["created"]))}'
            + (f" · tags: {e(', '.join(map(str, tags)))}" if tags else "") + "</span></div>"
            f'<div class="body">{e(p["body"])}</div>'
            + (f'<div class="muted">cites: {"; ".join(cites)}</div>' if cites else "")
            + _flags(json.loads(p["flags"] or "[]")))
        for r in replies.get(p["id"], []):
            out.append(f'<div class="reply"><span class="muted">{e(r["author"])} at '
                       f'{e(when(r["created"]))}</span><div class="body">{e(r["body"])}</div>'
                       + _flags(json.loads(r["flags"] or "[]")) + "</div>")
        out.append("</div>")
    return "".join(out)


def section_events(data: dict[str, Any]) -> str:
    events = data["events"]
    if not events:
        return '<h2>Integrity events</h2><p class="ok">None recorded.</p>'
    rows = [[e(when(v["at"])), e(v["agent"]), f"<code>{e(v['trial_id'])}</code>",
             f'<span class="flag">{e(v["kind"])}</span>', e(v["detail"])] for v in events]
    return (f"<h2>Integrity events ({len(events)})</h2>"
            + table(["time (UTC)", "agent", "trial", "kind", "detail"], rows))


def section_operations(data: dict[str, Any], latest: int = 20) -> str:
    """Internal errors (bugs) from operations.jsonl: count, then the latest with tracebacks."""
    entries = data["operations"]
    internal = sum(v.get("kind") == "tool_internal_error" for v in entries)
    if not entries:
        return '<h2>Internal errors</h2><p class="ok">None recorded.</p>'
    rows = [[e(when(v.get("at"))), f'<code class="id">{e(v.get("id"))}</code>',
             e(v.get("kind")), e(v.get("agent")), e(v.get("tool")),
             f"<details><summary>{e(operations.headline(v))}</summary>"
             f"<pre>{e(v.get('traceback'))}</pre><code>{e(v.get('args'))}</code></details>"]
            for v in entries[-latest:]]
    return (f"<h2>Internal errors ({internal}; operations log: {len(entries)} entries)</h2>"
            + table(["time (UTC)", "id", "kind", "agent", "tool", "error"], rows))


def section_audit(data: dict[str, Any]) -> str:
    """audit.json: {"rows": [...], "rule": ...} (lab.audit) or a bare list of rows."""
    audit = data["audit"]
    if audit is None:
        return ""
    rule = audit.get("rule") if isinstance(audit, dict) else None
    rows_in = (audit.get("rows") or []) if isinstance(audit, dict) else audit
    # each row names its configuration as the confirmation does (c1, c2, ...)
    names = {(c.get("method"), json.dumps(c.get("params") or {}, sort_keys=True)): c["name"]
             for c in data["summary"].get("candidates", []) if "name" in c}
    rows = []
    for r in rows_in if isinstance(rows_in, list) else []:
        params = r.get("params")
        lo, hi = r.get("ci_lo", r.get("lo")), r.get("ci_hi", r.get("hi"))
        vs = ("–" if r.get("delta_vs_vanilla") is None else
              f"{num(r.get('delta_vs_vanilla'))} (p Holm {pval(r.get('p_holm'))})")
        key = (r.get("method"), json.dumps(params or {}, sort_keys=True))
        rows.append([e(names.get(key, "–")), e(r.get("method")),
                     f"<code>{e(json.dumps(params, sort_keys=True) if params else '{}')}</code>",
                     e(r.get("setting")), interval(r.get("pgr"), lo, hi),
                     num(r.get("in_lab_pgr")), num(r.get("delta")), vs,
                     f"<b>{e(r.get('verdict'))}</b>"
                     + (f'<div class="muted">{e(r["note"])}</div>' if r.get("note") else "")])
    return ("<h2>Transfer audit (held-out settings)</h2>"
            + (f'<p class="muted">{e(rule)}</p>' if rule else "")
            + table(["config", "method", "params", "setting", "PGR [95% CI]", "in-lab PGR", "Δ",
                      "Δ vs vanilla", "verdict"], rows, {4, 5, 6, 7}))


def section_costs(data: dict[str, Any]) -> str:
    trials: dict[str, int] = {}
    for t in data["trials"]:
        if t.get("kind", "agent") == "agent":
            trials[t["agent"]] = trials.get(t["agent"], 0) + 1
    posts: dict[str, int] = {}
    for p in data["posts"]:
        posts[p["author"]] = posts.get(p["author"], 0) + 1
    subs: dict[str, int] = {}
    for s in data["submissions"]:
        subs[s["agent"]] = subs.get(s["agent"], 0) + 1
    rows, total = [], {k: 0 for k in USAGE_KEYS} | {"dollars": 0.0}
    for a in data["agents"]:
        u = a.get("usage") or {}
        name = a["agent"]
        for k in total:
            total[k] += u.get(k, 0) or 0
        rows.append([e(name), str(a.get("steps", "–")), str(trials.get(name, 0)),
                     str(subs.get(name, 0)), str(posts.get(name, 0)),
                     *(f"{u[k]:,}" if u.get(k) is not None else "–" for k in USAGE_KEYS),
                     f"${u['dollars']:.4f}" if u.get("dollars") is not None else "–"])
    if any(a.get("usage") for a in data["agents"]):
        rows.append(["<b>total</b>", "", "", "", "", *(f"<b>{total[k]:,}</b>" for k in USAGE_KEYS),
                     f"<b>${total['dollars']:.4f}</b>"])
    note = ("" if any(a.get("usage") for a in data["agents"]) else
            '<p class="muted">No API usage: the agents ran the offline brain.</p>')
    return ("<h2>Costs per agent</h2>" + note
            + table(["agent", "steps", "trials", "submissions", "posts",
                      *(f"{label} tokens" for label in USAGE_LABELS), "dollars"],
                     rows, set(range(1, 10))))


def render(data: dict[str, Any]) -> str:
    # the verdict and the plot first; the long leaderboard below them, collapsible
    body = "".join(f(data) for f in (section_header, section_verdict, section_progress,
                                     section_leaderboard,
                                     section_diversity, section_audit, section_events,
                                     section_operations,
                                     section_forum, section_costs))
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>aar-ray report: {e(data['name'])}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def write_report(campaign_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default <campaign dir>/report.html) and return its path."""
    path = Path(out) if out else Path(campaign_dir) / "report.html"
    path.write_text(render(load(campaign_dir)), encoding="utf-8")
    return path
