"""The supervisor's wire to a sandboxed child: length-prefixed frames on a pipe, and a decoder
that treats the child's bytes as hostile (bounded sizes, restricted unpickling)."""
from __future__ import annotations

import io
import os
import pickle
import select
import struct
import time
from collections.abc import Callable
from typing import Any

from aar_ray.sandbox.audit_hook import SandboxedCallError, SandboxViolation

_FRAME = struct.Struct(">Q")
MAX_MESSAGE = 256 << 20  # the child's bytes are hostile: bound what the supervisor buffers


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int, limit: int = MAX_MESSAGE) -> bytes | None:
    """One length-prefixed message; None at end of stream."""
    head = _read_exact(fd, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > limit:
        raise SandboxedCallError(f"sandboxed child sent a {size}-byte message; limit {limit}")
    body = _read_exact(fd, size)
    if body is None:
        raise SandboxedCallError("sandboxed child closed its pipe mid-message")
    return body


def _read_exact(fd: int, n: int) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def collect(fd: int, timeout_s: float, fn_path: str, reported: list,
            kill: Callable[[], None]) -> tuple | None:
    """Read the child's frames until its pipe closes: violations into `reported`, and the
    last other message, or ("corrupt",) if its code broke the framing. `kill` ends the child
    at the wall-clock limit."""
    final, deadline = None, time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            kill()
            raise SandboxViolation("timeout", f"{fn_path} exceeded {timeout_s}s wall clock")
        if not select.select([fd], [], [], min(left, 1.0))[0]:
            continue
        try:
            data = read_frame(fd)
            if data is None:
                return final
            msg = _ResultUnpickler(io.BytesIO(data)).load()
        except ForbiddenResult:
            raise  # a result of a type the parent will not decode: the method's error
        except (SandboxedCallError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                IndexError, AttributeError):  # framing the child's code broke or forged
            return ("corrupt",)
        if not isinstance(msg, tuple) or not msg:
            return ("corrupt",)
        if msg[0] == "violation":
            reported.append(msg[1:])
        else:
            final = msg


_SAFE_GLOBALS = frozenset(
    [("builtins", n) for n in ("set", "frozenset", "complex", "bytearray", "slice", "range")]
    + [(f"numpy.{c}.{m}", n) for c in ("core", "_core") for m, n in (
        ("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
       ("collections", "OrderedDict")])


class ForbiddenResult(pickle.UnpicklingError):
    """The result holds a type outside `_SAFE_GLOBALS`."""


class _ResultUnpickler(pickle.Unpickler):
    # The child runs agent code, so its bytes are hostile: a plain unpickle would run arbitrary
    # callables in the unsandboxed supervisor.
    def find_class(self, module: str, name: str) -> Any:
        if (module.replace("__builtin__", "builtins"), name) not in _SAFE_GLOBALS:
            raise ForbiddenResult(f"sandboxed result may not contain {module}.{name}")
        return super().find_class(module, name)
