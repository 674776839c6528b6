"""`make bench`: run every benchmark and write one Markdown table per benchmark to
bench/results.md (and print it). Targets are stated in the tables, never asserted in tests."""
from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

SUITES = ["w2s", "lab", "claude_tokens"]


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
    ap.add_argument("suites", nargs="*", default=SUITES, help=f"any of {SUITES}")
    ap.add_argument("--out", default="bench/results.md")
    args = ap.parse_args()
    parts = [f"# aar-ray benchmarks ({time.strftime('%Y-%m-%d %H:%M')})\n"]
    for name in args.suites:
        mod = importlib.import_module(f"aar_ray.bench.{name}")
        t0 = time.time()
        title, rows = mod.run()
        table = to_markdown(f"{title} ({time.time() - t0:.0f} s)", rows)
        print(table, flush=True)
        parts.append(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
