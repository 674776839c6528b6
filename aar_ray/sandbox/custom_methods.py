"""Agents' own methods: Python source written through the `write_method` tool, stored in the
agent's workspace and executed only inside the sandbox (`runner.run_sandboxed`: a fresh
interpreter under bubblewrap, Landlock and a seccomp allow-list, with the audit hook inside).

The agent's process only parses the source (`ast`, no execution); the trial worker runs it in
`run_sandboxed`, where reading the campaign, the caches (teacher and ceiling outputs derive from
labels) or the tasks' raw data, spawning processes, sockets, Ray and ctypes are all blocked.
"""
from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path
from typing import Any

from aar_ray.config import CampaignConfig, ConfigError

MAX_SOURCE = 20_000
NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
TEMPLATE = '''from dataclasses import dataclass
from aar_ray.w2s.methods import Method, MethodContext, param
from aar_ray.w2s.student import one_hot

class MyMethod(Method):
    """What it does and why."""
    name = "my_method"

    @dataclass
    class Params:
        keep: float = param(0.5, lo=0.0, hi=1.0, help="...")

    def run(self, ctx: MethodContext):
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes))
        return student.predict("test")
'''


def method_id(agent: str, name: str) -> str:
    return f"custom:{agent}/{name}"


def parse_id(method: str) -> tuple[str, str] | None:
    if not method.startswith("custom:"):
        return None
    agent, _, name = method[len("custom:"):].partition("/")
    return agent, name


def check_source(name: str, source: str, builtin: set[str]) -> None:
    """Static checks only: the source is never executed outside the sandbox."""
    if not NAME.match(name):
        raise ConfigError(f"method name {name!r}: use 2-40 lowercase letters, digits or _")
    if name in builtin:
        raise ConfigError(f"method name {name!r} is a built-in; choose another")
    if len(source) > MAX_SOURCE:
        raise ConfigError(f"method source is {len(source)} characters; at most {MAX_SOURCE}")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigError(f"method source does not parse: line {e.lineno}: {e.msg}") from None
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and any(getattr(b, "id", getattr(b, "attr", "")) == "Method" for b in n.bases)]
    if len(classes) != 1:
        raise ConfigError("define exactly one class that subclasses Method (from "
                          "aar_ray.w2s.methods), with a Params dataclass and run(ctx); "
                          "template:\n" + TEMPLATE)


def method_path(campaign_dir: str | Path, agent: str, name: str) -> Path:
    return Path(campaign_dir) / "agents" / agent / "methods" / f"{name}.py"


def save(campaign_dir: str | Path, agent: str, name: str, source: str,
         builtin: set[str]) -> dict[str, Any]:
    check_source(name, source, builtin)
    path = method_path(campaign_dir, agent, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return {"method": method_id(agent, name), "code_hash": code_hash(source)}


def code_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def sandbox_limits(cfg: CampaignConfig, campaign_dir: str | Path):
    """The audit hook's names for what an agent's method must not read (the kernel layer's
    allow-list already excludes them): the campaign, the caches, the tasks' raw data."""
    from aar_ray.sandbox.audit_hook import SandboxLimits
    from aar_ray.w2s.features import default_cache_dir
    from aar_ray.w2s.tasks import TASKS

    denied = [str(Path(campaign_dir).resolve()), str(Path(cfg.cache_dir or default_cache_dir())),
              str(Path(cfg.root).resolve())]
    for task in TASKS:
        try:
            denied += TASKS.get(task).protected_paths()
        except RuntimeError:
            pass  # a task whose package is missing has nothing to protect
    return SandboxLimits(cpu_seconds=cfg.resources.sandbox_cpu_seconds,
                         memory_bytes=cfg.resources.sandbox_memory_mb << 20,
                         denied_roots=tuple(denied))


def run_in_sandbox(source: str, name: str, params: dict[str, Any], inputs: list,
                   student, finetune) -> list:
    """Runs inside the sandboxed child: load the agent's module, find its Method, train."""
    from aar_ray.sandbox.audit_hook import load_untrusted_source
    from aar_ray.w2s.methods import Method, build_params
    from aar_ray.w2s.trial import run_method_instance

    module = load_untrusted_source(source, name)
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Method) and v is not Method]
    if len(found) != 1:
        raise ValueError(f"the method source defines {len(found)} Method subclasses; expected 1")
    cls = found[0]
    method = cls(build_params(cls, params))
    return [run_method_instance(method, inp, student, finetune) for inp in inputs]


def run_any(cfg: CampaignConfig, campaign_dir: str | Path, method: str, params: dict[str, Any],
            inputs: list, source: str | None = None) -> list:
    """Test-split predictions of `method` for each of `inputs`: built-ins run here, agents'
    methods in a sandboxed child. `source` ships an agent's method to a worker on another
    node; by default it is read from the campaign directory."""
    from aar_ray.sandbox.runner import run_sandboxed
    from aar_ray.w2s.trial import run_method

    custom = parse_id(method)
    if custom is None:
        return [run_method(method, params, inp, cfg.student, cfg.finetune) for inp in inputs]
    if cfg.student.mode == "finetune":
        raise ConfigError("agents' own methods run with student.mode 'head' only: a finetuned "
                          "student trains through Ray Train, which the sandbox cannot reach")
    if source is None:
        source = method_path(campaign_dir, *custom).read_text()
    limits = sandbox_limits(cfg, campaign_dir)
    return run_sandboxed("aar_ray.sandbox.custom_methods:run_in_sandbox", source, custom[1],
                         params, list(inputs), cfg.student, cfg.finetune, limits=limits,
                         timeout_s=limits.cpu_seconds * 4 + 120,
                         allow_weak=cfg.resources.sandbox_allow_weak,
                         fallback=cfg.resources.sandbox_fallback)
