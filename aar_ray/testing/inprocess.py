"""A lab actor's plain class called the way `LabToolbox` calls a Ray handle, so the lab's rules
are testable without Ray: coroutines (the trial queue's methods) run to completion on a fresh
event loop."""
from __future__ import annotations

import asyncio
import inspect
from typing import Any


class InProcess:
    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.obj, name)
        if not inspect.iscoroutinefunction(fn):
            return fn
        return lambda *a, **k: asyncio.run(fn(*a, **k))
