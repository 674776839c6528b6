"""Shared fixtures: one feature/teacher cache per test session and small W2S settings."""
from __future__ import annotations

import os
import sys

import pytest

# one auth mode for every driver: a stray ~/.ray/auth_token would switch Ray to token auth
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# every Ray node a test starts (embedded, `ray start`, multi-node) keeps 127.0.0.1: set before
# anything imports ray, which reads the flag once (aar_ray/lab/placement.py)
from aar_ray.connect import LOOPBACK_ENV  # noqa: E402

os.environ.update(LOOPBACK_ENV)

from aar_ray.config import SettingConfig, StudentConfig  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Features, teachers and ceilings shared by every test (embedding is the slow part).
    AAR_TEST_CACHE reuses one across runs when iterating locally."""
    return os.environ.get("AAR_TEST_CACHE") or str(tmp_path_factory.mktemp("aar-cache"))


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray for one test module (loopback, no dashboard), in the lab's namespace."""
    import ray

    from aar_ray.lab import NAMESPACE

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def small_setting() -> SettingConfig:
    """Real tweets, weak GloVe, strong = MiniLM cut to one layer (fast to embed)."""
    return SettingConfig(task="tweets", weak="glove50", strong="minilm_l1", max_examples=800,
                         test_size=200)


@pytest.fixture(scope="session")
def fast_student() -> StudentConfig:
    return StudentConfig(hidden=64, epochs=20, batch_size=64)


# ---- a real Ray cluster: `ray start --head` on 127.0.0.1 (aar_ray/testing/cluster.py) ----


@pytest.fixture(scope="module")
def cluster():
    """One loopback head per test module: `address` (dashboard, Jobs API), `gcs`, `env` for
    `ray` commands, `metrics` (export port)."""
    from aar_ray.testing.cluster import loopback_head

    try:
        with loopback_head() as c:
            yield c
    except RuntimeError as e:
        pytest.fail(str(e))


# The suite's process has loaded torch, pyarrow, Ray's gRPC threads and the sandbox's fork
# servers; a native crash during interpreter teardown (after the summary is printed) turned a
# green run into a SIGSEGV exit. Every cluster and sandbox the tests start is torn down by
# fixtures or dies with its parent (--die-with-parent), so skip the teardown and exit with
# pytest's own status.
_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS not in config.stash:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])
