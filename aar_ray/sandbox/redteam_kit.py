"""What every red-team attack needs: the attack method's source header and a tool-driven
trial run (the attacks act only through an agent's tools)."""
from __future__ import annotations

import json
from typing import Any

from aar_ray.lab.tools import LabToolbox

HEADER = '''from dataclasses import dataclass
import numpy as np
from aar_ray.w2s.methods import Method, MethodContext, param

class Attack(Method):
    """red team"""
    name = "attack"

    @dataclass
    class Params:
        flip: int = param(-1, lo=-1, hi=100000)

    def run(self, ctx: MethodContext):
        n = len(ctx.students.x_test)
'''

def run_trial(tools: LabToolbox, method: str, params: dict | None = None,
              seeds: list[int] | None = None) -> dict[str, Any]:
    """Run `method` through `tools` and wait for it to end: its final status."""
    out = tools.call("run_trial", {"method": method, "params": params or {},
                                   **({"seeds": seeds} if seeds else {})})
    if out.is_error:
        return {"status": "refused", "error": out.content}
    tid = json.loads(out.content)["trial_id"]
    while True:
        st = tools.call("trial_status", {"trial_id": tid, "wait_s": 60}).data()
        if st["status"] in ("done", "error"):
            return st
