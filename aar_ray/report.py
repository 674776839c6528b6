"""One self-contained HTML report of a campaign directory: leaderboard, progress over time,
diversity, forum threads, integrity events, the transfer audit and costs.

Inline CSS and SVG only: no script, no external request (a Content-Security-Policy forbids
both), so the file can be mailed, archived or opened offline. Everything an agent wrote is
untrusted and escaped. SQLite files are opened read-only, so a running campaign can be reported.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import yaml

from aar_ray.lab.store import read_rows
from aar_ray.observe import operations
from aar_ray.results.diversity import diversity

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
USAGE = (("input_tokens", "input"), ("output_tokens", "output"),
         ("cache_read_input_tokens", "cache read"), ("cache_creation_input_tokens", "cache write"))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
 max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px} .muted{color:#777} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:110px}
.card b{display:block;font-size:17px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.baseline td{background:#fff8e1} code{font-size:12px;overflow-wrap:anywhere}
code.id{white-space:nowrap;word-break:normal}
.cell{display:inline-block;min-width:2.4em;text-align:center;border-radius:3px}
.flag{color:#b00020;font-size:12px} .ok{color:#1b5e20}
.post{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
.post .body,.reply .body{white-space:pre-wrap;word-wrap:break-word;margin:4px 0}
.reply{border-left:3px solid #ddd;margin:6px 0 6px 12px;padding:2px 10px}
.kind{font-size:11px;border-radius:3px;padding:1px 5px;background:#eee;margin-right:4px}
.kind-result{background:#e3f2fd} .kind-error{background:#ffebee}
.kind-hypothesis{background:#f3e5f5}
svg text{font:11px system-ui,sans-serif}
pre{white-space:pre-wrap;font-size:12px;margin:4px 0}
"""


def e(value: Any) -> str:
    """Escape anything for HTML text or attributes (agent text is untrusted)."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def when(ts: float | None) -> str:
    return "–" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))




def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- data ------------------------------------------------------------------------------------


def load(campaign_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, from the campaign directory alone."""
    d = Path(campaign_dir)
    summary = _json(d / "summary.json") or {}
    try:
        config = yaml.safe_load((d / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    subs = read_rows(d / "scorer.sqlite",
                 "SELECT s.trial_id, s.agent, s.submitted_at, s.private, s.shown, s.flags, "
                 "t.method, t.params, t.seeds FROM submissions s JOIN trials t USING (trial_id) "
                 "ORDER BY s.submitted_at")
    for s in subs:
        private = json.loads(s.pop("private") or "{}")
        s.update(pgr=private.get("pgr"), se=private.get("se"),
                 per_seed=private.get("per_seed", []), params=json.loads(s["params"]),
                 seeds=json.loads(s["seeds"]), flags=json.loads(s["flags"] or "[]"))
    board = summary.get("leaderboard")
    if board is None:
        board = sorted((s for s in subs if s["pgr"] is not None), key=lambda s: -s["pgr"])
    trials = read_rows(d / "trials.sqlite", "SELECT * FROM trials ORDER BY seq")
    for t in trials:
        t["params"] = json.loads(t["params"] or "{}")
    agent_trials = [t for t in trials if t.get("kind", "agent") == "agent"]
    agents = summary.get("agents")
    if agents is None:
        agents = []
        for state_file in sorted((d / "agents").glob("*/state.json")):
            state = _json(state_file) or {}
            brain = state.get("brain") or {}
            agents.append({"agent": state_file.parent.name, "steps": state.get("steps"),
                           "finished": state.get("finished"),
                           "usage": brain.get("usage") or {}})
    return {
        "dir": d, "name": config.get("name") or d.name, "config": config, "summary": summary,
        "leaderboard": board, "submissions": subs, "trials": trials,
        "diversity": summary.get("diversity") or diversity(agent_trials),
        "posts": read_rows(d / "forum.sqlite", "SELECT * FROM posts ORDER BY id"),
        "events": read_rows(d / "scorer.sqlite", "SELECT * FROM events ORDER BY id"),
        "operations": operations.read(d),
        "audit": _json(d / "audit.json"), "agents": agents,
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


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           classes: list[str] | None = None) -> str:
    def cell(tag: str, i: int, v: str) -> str:
        return f"<{tag} class=\"n\">{v}</{tag}>" if i in numeric else f"<{tag}>{v}</{tag}>"

    out = ["<table><thead><tr>", *(cell("th", i, h) for i, h in enumerate(head)),
           "</tr></thead><tbody>"]
    for j, row in enumerate(rows):
        cls = f' class="{classes[j]}"' if classes and classes[j] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return "".join(out) + "</tbody></table>"


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


def _interval(value: Any, lo: Any, hi: Any) -> str:
    return f"{num(value)} <span class=\"muted\">[{num(lo)}, {num(hi)}]</span>"


def section_leaderboard(data: dict[str, Any]) -> str:
    """The private board; the statistics columns appear once the scorer annotates entries
    (leaderboard_stats: pooled PGR with its CI, ΔPGR vs the baseline, p and Holm's p)."""
    board = data["leaderboard"]
    if not board:
        return "<h2>Leaderboard (private split)</h2><p class=\"muted\">No scored submissions.</p>"
    has = {k: any(k in b for b in board)
           for k in ("ci_lo", "delta_vs_baseline", "p_vs_baseline", "p_holm")}
    head = ["#", "trial", "agent", "method", "params", "seeds", "PGR", "± SE"]
    if has["ci_lo"]:
        head.append("pooled PGR [95% CI]")
    if has["delta_vs_baseline"]:
        head.append("Δ vs baseline [95% CI]")
    if has["p_vs_baseline"]:
        head.append("p vs baseline")
    if has["p_holm"]:
        head.append("p (Holm)")
    numeric = {0, *range(5, len(head))}
    head.append("flags")
    rows, classes = [], []
    for i, b in enumerate(board, 1):
        row = [str(i), f'<code class="id">{e(b["trial_id"])}</code>', e(b["agent"]),
               e(b["method"]),
               f"<code>{e(json.dumps(b.get('params') or {}, sort_keys=True))}</code>",
               str(len(b.get("seeds") or [])), num(b.get("pgr")), num(b.get("se"))]
        if has["ci_lo"]:
            row.append(_interval(b.get("pgr_pooled"), b.get("ci_lo"), b.get("ci_hi")))
        if has["delta_vs_baseline"]:
            row.append(_interval(b.get("delta_vs_baseline"), b.get("delta_lo"),
                                 b.get("delta_hi")))
        if has["p_vs_baseline"]:
            row.append(num(b.get("p_vs_baseline"), 4))
        if has["p_holm"]:
            holm = num(b.get("p_holm"), 4)
            row.append(f"<b>{holm}</b> ✓" if b.get("significant") else holm)
        row.append(_flags(b.get("flags")))
        rows.append(row)
        classes.append("baseline" if b["agent"] == "baseline" else "")
    note = ("Every number computed by the scorer on the private half of the test split; agents "
            "only ever saw rounded public scores.")
    if has["p_holm"]:
        note += " ✓ = better than the baseline after Holm's correction (p &lt; 0.05)."
    return ("<h2>Leaderboard (private split)</h2><p class=\"muted\">" + note + "</p>"
            + _table(head, rows, numeric, classes))


def svg_progress(series: dict[str, list[tuple[float, float]]], baseline: float | None) -> str:
    """Step lines of each agent's best private PGR against time since the first submission."""
    points = [p for s in series.values() for p in s]
    if not points:
        return "<p class=\"muted\">No scored submissions yet.</p>"
    width, height, left, right, top, bottom = 900, 340, 52, 150, 14, 38
    t0 = min(t for t, _ in points)
    span = max(max(t for t, _ in points) - t0, 1.0)
    unit, scale = ("minutes", 60.0) if span >= 180 else ("seconds", 1.0)
    t_max = span / scale
    ys = [v for _, v in points] + ([baseline] if baseline is not None else []) + [0.0]
    y_lo, y_hi = min(ys), max(max(ys), 0.1)
    pad = 0.08 * (y_hi - y_lo or 1)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + pw * ((t - t0) / scale) / t_max

    def y(v: float) -> float:
        return top + ph * (1 - (v - y_lo) / (y_hi - y_lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="best PGR over time">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" '
           'stroke="#ccc"/>']
    for k in range(6):
        v = y_lo + (y_hi - y_lo) * k / 5
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:.2f}</text>')
        m = t_max * k / 5
        out.append(f'<text x="{left + pw * k / 5:.1f}" y="{top + ph + 16}" '
                   f'text-anchor="middle">{m:.3g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{unit} since '
               'first submission</text>')
    out.append(f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" '
               'text-anchor="middle">best private PGR</text>')
    if baseline is not None:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(baseline):.1f}" '
                   f'y2="{y(baseline):.1f}" stroke="#555" stroke-dasharray="5 4"/>'
                   f'<text x="{left + pw - 4}" y="{y(baseline) - 4:.1f}" text-anchor="end" '
                   'fill="#555">baseline</text>')
    t_end = t0 + span
    for i, (agent, s) in enumerate(sorted((a, s) for a, s in series.items()
                                          if a != "baseline")):
        color = PALETTE[i % len(PALETTE)]
        d = f"M{x(s[0][0]):.1f},{y(s[0][1]):.1f}"
        for (_, prev), (t, v) in zip(s, s[1:], strict=False):
            d += f" H{x(t):.1f}" + (f" V{y(v):.1f}" if v != prev else "")
        d += f" H{x(t_end):.1f}"
        out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"><title>'
                   f'{e(agent)}</title></path>')
        out.extend(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>'
                   f'{e(agent)}: {v:.3f} at {e(when(t))}</title></circle>' for t, v in s)
        ly = top + 14 + 16 * i
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 9}" width="12" height="4" '
                   f'fill="{color}"/><text x="{left + pw + 30}" y="{ly - 4}">{e(agent)}</text>')
    return "".join(out) + "</svg>"


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
    table = _table(["agent", "methods", "regions", "which", "direction"], rows, {1, 2})
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
                  + _table(["method", *map(e, agents)], cells, set(range(1, len(agents) + 1))))
    return head + table + matrix


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
            + _table(["time (UTC)", "agent", "trial", "kind", "detail"], rows))


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
            + _table(["time (UTC)", "id", "kind", "agent", "tool", "error"], rows))


def section_audit(data: dict[str, Any]) -> str:
    """audit.json: {"rows": [...], "rule": ...} (lab.audit) or a bare list of rows."""
    audit = data["audit"]
    if audit is None:
        return ""
    rule = audit.get("rule") if isinstance(audit, dict) else None
    rows_in = (audit.get("rows") or []) if isinstance(audit, dict) else audit
    rows = []
    for r in rows_in if isinstance(rows_in, list) else []:
        params = r.get("params")
        lo, hi = r.get("ci_lo", r.get("lo")), r.get("ci_hi", r.get("hi"))
        vs = ("–" if r.get("delta_vs_vanilla") is None else
              f"{num(r.get('delta_vs_vanilla'))} (p Holm {num(r.get('p_holm'), 4)})")
        rows.append([e(r.get("method")),
                     f"<code>{e(json.dumps(params, sort_keys=True) if params else '{}')}</code>",
                     e(r.get("setting")), _interval(r.get("pgr"), lo, hi),
                     num(r.get("in_lab_pgr")), num(r.get("delta")), vs,
                     f"<b>{e(r.get('verdict'))}</b>"
                     + (f'<div class="muted">{e(r["note"])}</div>' if r.get("note") else "")])
    return ("<h2>Transfer audit (held-out settings)</h2>"
            + (f'<p class="muted">{e(rule)}</p>' if rule else "")
            + _table(["method", "params", "setting", "PGR [95% CI]", "in-lab PGR", "Δ",
                      "Δ vs vanilla", "verdict"], rows, {3, 4, 5, 6}))


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
    rows, total = [], {k: 0 for k, _ in USAGE} | {"dollars": 0.0}
    for a in data["agents"]:
        u = a.get("usage") or {}
        name = a["agent"]
        for k in total:
            total[k] += u.get(k, 0) or 0
        rows.append([e(name), str(a.get("steps", "–")), str(trials.get(name, 0)),
                     str(subs.get(name, 0)), str(posts.get(name, 0)),
                     *(f"{u[k]:,}" if u.get(k) is not None else "–" for k, _ in USAGE),
                     f"${u['dollars']:.4f}" if u.get("dollars") is not None else "–"])
    if any(a.get("usage") for a in data["agents"]):
        rows.append(["<b>total</b>", "", "", "", "", *(f"<b>{total[k]:,}</b>" for k, _ in USAGE),
                     f"<b>${total['dollars']:.4f}</b>"])
    note = ("" if any(a.get("usage") for a in data["agents"]) else
            '<p class="muted">No API usage: the agents ran the offline brain.</p>')
    return ("<h2>Costs per agent</h2>" + note
            + _table(["agent", "steps", "trials", "submissions", "posts",
                      *(f"{label} tokens" for _, label in USAGE), "dollars"],
                     rows, set(range(1, 10))))


def render(data: dict[str, Any]) -> str:
    body = "".join(f(data) for f in (section_header, section_leaderboard, section_progress,
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
