"""The package's import graph, read from the source (every `import`, module-level or inside a
function): no circles, the science imports neither Ray nor the lab, and every import goes down
the layers listed in README.md ("Architecture").
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aar_ray"

# Lowest first. A module belongs to the layer of the longest prefix that names it; a module
# may import its own layer or any lower one. `results` and `sandbox` hold both sides of the
# lab: their pure parts (statistics, records, the audit, isolation) sit below the actors that
# use them, and the drivers that run the lab itself (rerun, compare, red team) sit above it.
# The fakes (`testing`: the fake Messages API, scripted researchers) sit above the lab: whoever
# decides to use one (the CLI, a test, the red team) starts it and hands the lab its address.
LAYERS: list[tuple[str, ...]] = [
    ("aar_ray.errors", "aar_ray.registry", "aar_ray.typed", "aar_ray.connect"),
    ("aar_ray.config",),
    ("aar_ray.w2s",),
    ("aar_ray.train", "aar_ray.observe"),
    ("aar_ray.brains",),
    ("aar_ray.sandbox", "aar_ray.results"),
    ("aar_ray.lab",),
    ("aar_ray.testing",),
    ("aar_ray.results.rerun", "aar_ray.results.compare", "aar_ray.sandbox.redteam",
     "aar_ray.sandbox.redteam_detect", "aar_ray.sandbox.redteam_isolation",
     "aar_ray.sandbox.redteam_inject", "aar_ray.sandbox.redteam_bwrap",
     "aar_ray.sandbox.redteam_kit",
     "aar_ray.testing.cluster", "aar_ray.bench", "aar_ray.cli",
     "aar_ray.report", "aar_ray.status", "aar_ray.cluster_config", "aar_ray"),
]
SCIENCE_MAY_NOT_IMPORT = ("ray", "aar_ray.lab", "aar_ray.brains", "aar_ray.sandbox",
                          "aar_ray.results", "aar_ray.observe", "aar_ray.cli", "aar_ray.train")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """What `name` imports: modules of this package by full name (a `from pkg import x` counts
    as an import of `pkg.x` when that is a module, else of `pkg`) and third-party top-level
    packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & known
            out |= subs
            if len(subs) < len(node.names):
                out.add(module)
    return {m if m in known or not m.startswith("aar_ray") else _owner(m, known) for m in out}


def _owner(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) - {m} for m, p in mods.items()}


def layer(module: str) -> int:
    best = max(((len(prefix), i) for i, group in enumerate(LAYERS) for prefix in group
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and README.md"
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    edges = graph()
    assert "aar_ray.registry" in edges["aar_ray.config"]  # module level
    assert "aar_ray.w2s.tasks" in edges["aar_ray.w2s.tasks.tweets"]  # from pkg import names
    assert "aar_ray.brains.offline" in edges["aar_ray.brains"]  # inside a function
    assert "aar_ray.brains.untrusted" in edges["aar_ray.brains.claude"]  # from pkg import module
    assert "ray" in edges["aar_ray.lab.actors"]  # third party
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_science_imports_neither_ray_nor_the_lab():
    bad = sorted((m, d) for m, ds in graph().items() if m.startswith("aar_ray.w2s")
                 for d in ds for banned in SCIENCE_MAY_NOT_IMPORT
                 if d == banned or d.startswith(banned + "."))
    assert bad == []


def test_imports_only_go_down_the_layers():
    edges = graph()
    up = sorted(f"{m} (layer {layer(m)}) -> {d} (layer {layer(d)})"
                for m, ds in edges.items() for d in ds
                if d.startswith("aar_ray") and layer(d) > layer(m))
    assert up == []


def private_imports() -> set[tuple[str, str]]:
    """(importer, name) for every `from aar_ray.x import _name` of a non-module name."""
    known = set(modules())
    found = set()
    for m, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aar_ray"):
                found |= {(m, a.name) for a in node.names
                          if a.name.startswith("_") and f"{node.module}.{a.name}" not in known}
    return found


def test_no_module_imports_another_modules_private_names():
    assert sorted(private_imports()) == []


def test_importing_the_lab_has_no_side_effects():
    """No Ray Train launcher is installed by an import: the lab's processes install it where
    they start (`campaign.start_lab`, the scorer actor, the trial task)."""
    code = ("import aar_ray.lab.campaign, aar_ray.lab.actors, aar_ray.lab.trials\n"
            "from aar_ray.w2s import finetune\n"
            "assert finetune._trainer is None, 'installed on import'\n"
            "from aar_ray import train\n"
            "train.install()\n"
            "assert finetune._trainer is not None\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
