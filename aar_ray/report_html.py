"""HTML building blocks of `aar report`: escaping, numbers and times, tables, intervals, one SVG
step plot, the style sheet. No script and no external request: the report's CSP forbids both."""
from __future__ import annotations

import html
import time
from typing import Any

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
 max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px} summary h2{display:inline-block;cursor:pointer}
 .muted{color:#777} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
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


def pval(p: Any) -> str:
    """A p-value in scientific notation: 3.2e-07, never a 0.0000 that hides how small."""
    return "–" if p is None else f"{p:.1e}"


def when(ts: float | None) -> str:
    return "–" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           classes: list[str] | None = None) -> str:
    def cell(tag: str, i: int, v: str) -> str:
        return f"<{tag} class=\"n\">{v}</{tag}>" if i in numeric else f"<{tag}>{v}</{tag}>"

    out = ["<table><thead><tr>", *(cell("th", i, h) for i, h in enumerate(head)),
           "</tr></thead><tbody>"]
    for j, row in enumerate(rows):
        cls = f' class="{classes[j]}"' if classes and classes[j] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return "".join(out) + "</tbody></table>"


def interval(value: Any, lo: Any, hi: Any) -> str:
    return f"{num(value)} <span class=\"muted\">[{num(lo)}, {num(hi)}]</span>"


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
