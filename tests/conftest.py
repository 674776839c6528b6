"""Shared fixtures: one feature/teacher cache per test session and small W2S settings."""
from __future__ import annotations

import os

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"  # one auth mode for every driver (NOTES-ray §9.1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from aar_ray.config import SettingConfig, StudentConfig  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Features, teachers and ceilings shared by every test (embedding is the slow part).
    AAR_TEST_CACHE reuses one across runs when iterating locally."""
    return os.environ.get("AAR_TEST_CACHE") or str(tmp_path_factory.mktemp("aar-cache"))


@pytest.fixture(scope="session")
def small_setting() -> SettingConfig:
    """Real tweets, weak GloVe, strong = MiniLM cut to one layer (fast to embed)."""
    return SettingConfig(task="tweets", weak="glove50", strong="minilm_l1", max_examples=800,
                         test_size=200)


@pytest.fixture(scope="session")
def fast_student() -> StudentConfig:
    return StudentConfig(hidden=64, epochs=20, batch_size=64)
