"""`make mutation`: mutation testing of the core with mutmut (configured in pyproject.toml,
[tool.mutmut]: which modules are mutated and which fast tests judge them).

Runs mutmut from a clean `mutants/`, then writes `tests.mutation_score_core` =
killed / (killed + survived) into bench/results.json, with the counts per module. A mutant
that made the tests time out counts as killed (it was detected); one that no selected test
reaches ("no tests") counts as survived: nothing would notice it. Surviving mutants are printed;
docs/testing.md lists those that are equivalent to the original code, and why.
"""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from aar_ray.bench import RESULTS, merge_results

ROOT = RESULTS.parents[1]
KILLED = {"killed", "timeout"}
SURVIVED = {"survived", "no tests"}


def mutmut(*args: str) -> str:
    exe = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"mutmut {' '.join(args)} failed ({out.returncode}):\n"
                         f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def statuses(results: str) -> list[tuple[str, str]]:
    """(mutant name, status) from `mutmut results --all true` lines `    name: status`."""
    rows = []
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            rows.append((name, status))
    return rows


def module_of(mutant: str) -> str:
    """aar_ray.w2s.pgr.x_pooled__mutmut_3 -> aar_ray/w2s/pgr.py (a class method's mangled
    name has a further part after the module; the module is the longest prefix on disk)."""
    parts = mutant.split(".")
    for i in range(len(parts) - 1, 0, -1):
        path = Path(*parts[:i]).with_suffix(".py")
        if (ROOT / path).exists():
            return str(path)
        if (ROOT / Path(*parts[:i]) / "__init__.py").exists():
            return str(Path(*parts[:i]) / "__init__.py")
    return parts[0]


def score(counts: collections.Counter) -> float | None:
    killed = sum(counts[s] for s in KILLED)
    survived = sum(counts[s] for s in SURVIVED)
    return round(killed / (killed + survived), 4) if killed + survived else None


def main() -> None:
    t0 = time.time()
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a fresh measurement, no stale cache
    mutmut("run", "--max-children", str(max(1, (os.cpu_count() or 2))))
    rows = statuses(mutmut("results", "--all", "true"))
    if not rows:
        raise SystemExit("mutmut produced no mutants: check [tool.mutmut] in pyproject.toml")
    total: collections.Counter = collections.Counter(s for _, s in rows)
    per_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, status in rows:
        per_module[module_of(name)][status] += 1
    value = score(total)
    merge_results("tests", {
        "mutation_score_core": value,
        "mutation_counts_core": dict(total),
        "mutation_score_by_module": {m: score(c) for m, c in sorted(per_module.items())},
        "mutation_seconds": round(time.time() - t0),
    })
    for m, c in sorted(per_module.items()):
        print(f"{m:<36} score {score(c)}  {dict(c)}")
    print(f"mutation score (core): {value}  {dict(total)}  in {time.time() - t0:.0f} s")
    survivors = [n for n, s in rows if s in SURVIVED]
    if survivors:
        print("surviving mutants (`.venv/bin/mutmut show NAME` shows the change):")
        print("\n".join(f"  {n}" for n in survivors))


if __name__ == "__main__":
    main()
