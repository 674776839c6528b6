"""Attacks of agent-written code, through `aar trial --method-file` (the agents' own sandbox and
limits), each refused by the bubblewrap layer: native syscalls from a module loaded out of a
memfd, a fork that outlives its trial, a forged result frame, the host's /proc/net and `stat`
of campaign and cache files. Each method *succeeds* (its trial is `done`) if the attack works,
so each test goes red when the layer is off."""
from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid

import pytest

from aar_ray.cli import build_parser, trial_config
from aar_ray.lab import method_file
from aar_ray.sandbox import kernel, redteam_bwrap
from aar_ray.sandbox.redteam_kit import NoCompiler, build_native

LAYERS = kernel.detect()
pytestmark = pytest.mark.skipif(not LAYERS.bwrap, reason=f"kernel offers {LAYERS.describe()}")
HEAD = '''
import os, sys
import numpy as np
from dataclasses import dataclass
from aar_ray.w2s.methods import Method, MethodContext
from aar_ray.w2s.student import one_hot

class Attack(Method):
    name = "attack"

    @dataclass
    class Params:
        pass

    def run(self, ctx: MethodContext):
        attack()  # returns only if the attack worked: the trial is then `done`
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes))
        return student.predict("test")
'''


def trial(tmp_path, cache_dir, monkeypatch, body: str) -> dict:
    monkeypatch.setenv("AAR_CACHE", cache_dir)
    path = tmp_path / "attack_method.py"
    path.write_text(textwrap.dedent(body) + HEAD)
    args = build_parser().parse_args([
        "trial", "--method-file", str(path), "--task", "tweets", "--weak", "glove50",
        "--strong", "minilm_l1", "--max-examples", "800", "--test-size", "200", "--seeds", "0",
        "--hidden", "0", "--epochs", "5"])
    return method_file.trial(args.config, trial_config(args), str(path))


def test_a_harmless_method_file_runs(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, "def attack():\n    pass\n")
    assert out["status"] == "done", out
    assert out["summary"]["method"] == "custom:method-file/attack_method"


@pytest.fixture(scope="module")
def evil_so(tmp_path_factory) -> bytes:
    try:
        return build_native("evil", redteam_bwrap.NATIVE_C, tmp_path_factory.mktemp("evil"))
    except NoCompiler as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("which", redteam_bwrap.NATIVE_OPS)
def test_native_syscalls_from_a_memfd_module_are_refused(tmp_path, cache_dir, monkeypatch,
                                                         evil_so, which):
    victim = tmp_path / "outside.txt"  # a host file outside every grant
    victim.write_text("x")
    os.chmod(victim, 0o600)
    before, host = os.stat(victim), socket.gethostname()
    out = trial(tmp_path, cache_dir, monkeypatch,
                redteam_bwrap.native(which, evil_so, str(victim)))
    assert out["status"] == "error", out
    after = os.stat(victim)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert socket.gethostname() == host


def test_a_fork_does_not_outlive_its_trial(tmp_path, cache_dir, monkeypatch):
    token = f"aar-fork-{uuid.uuid4().hex[:12]}"
    out = trial(tmp_path, cache_dir, monkeypatch, redteam_bwrap.lingering_fork(token))
    time.sleep(1)
    alive = redteam_bwrap.alive_with(token)
    for pid in alive:
        os.kill(pid, 9)
    assert alive == [], (alive, out)


def test_a_forged_result_frame_still_records_the_violation(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, redteam_bwrap.FORGED_FRAME)
    assert out["status"] == "error" and out["event"] is not None, out


def test_the_hosts_proc_net_is_not_visible(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, redteam_bwrap.PROC_NET)
    assert out["status"] == "error", out


def test_campaign_and_cache_files_cannot_be_stat(tmp_path, cache_dir, monkeypatch):
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    (campaign / "scorer.sqlite").write_bytes(b"SQLite format 3\0")
    targets = [str(campaign / "scorer.sqlite"), cache_dir, os.path.expanduser("~/.ray"),
               "/tmp/ray"]
    out = trial(tmp_path, cache_dir, monkeypatch, redteam_bwrap.stat_files(targets))
    assert out["status"] == "error", out


def test_refuse_fallback_refuses_custom_methods_in_one_line():
    from aar_ray.sandbox.runner import IsolationUnavailable, run_sandboxed

    no_userns = kernel.Layers(landlock_abi=LAYERS.landlock_abi, seccomp=True, bwrap=False)
    with pytest.raises(IsolationUnavailable, match="sandbox_fallback") as info:
        run_sandboxed("aar_ray.sandbox.launcher:run_main", "def main():\n    return 1\n",
                      layers=no_userns, fallback="refuse")
    assert "\n" not in str(info.value)
    assert run_sandboxed("aar_ray.sandbox.launcher:run_main", "def main():\n    return 1\n",
                         layers=no_userns, fallback="landlock") == 1
