"""`make bench`: run every benchmark and write one Markdown table per benchmark to
bench/results.md (and print it). Targets are stated in the tables, never asserted in tests.
Each suite's table replaces its own section of results.md; the other suites' stay."""
from __future__ import annotations

import argparse
import importlib
import re
import time
from pathlib import Path

SUITES = ["w2s", "startup", "lab", "claude_tokens", "sandbox"]
OPT_IN = ["sweep", "soak"]  # an hour or more each on 2 cores, so run by name only
MARK = "<!-- bench:{} -->"


def merge(old: str, tables: dict[str, str]) -> str:
    """results.md with the sections of `tables` (suite -> Markdown) replaced or appended."""
    sections = dict(re.findall(r"<!-- bench:(\w+) -->\n(.*?)(?=<!-- bench:|\Z)", old, re.S))
    sections.update(tables)
    return (f"# aar-ray benchmarks (updated {time.strftime('%Y-%m-%d %H:%M')})\n\n"
            + "".join(f"{MARK.format(k)}\n{v.rstrip()}\n\n" for k, v in sections.items()))


def to_markdown(title: str, rows: list[dict]) -> str:
    if not rows:
        return f"### {title}\n\n(no rows)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m aar_ray.bench")
    ap.add_argument("suites", nargs="*", help=f"default: {SUITES}; also {OPT_IN}")
    ap.add_argument("--out", default="bench/results.md")
    args = ap.parse_args()
    args.suites = args.suites or SUITES
    unknown = sorted(set(args.suites) - set(SUITES + OPT_IN))
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; choose from {SUITES + OPT_IN}")
    tables = {}
    for name in args.suites:
        mod = importlib.import_module(f"aar_ray.bench.{name}")
        t0 = time.time()
        title, rows = mod.run()
        tables[name] = to_markdown(f"{title} ({time.time() - t0:.0f} s, "
                                   f"{time.strftime('%Y-%m-%d')})", rows)
        print(tables[name], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(merge(out.read_text() if out.exists() else "", tables))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
