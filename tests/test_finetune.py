"""The finetune student mode end to end through Ray Train's TorchTrainer, on CPU.

Each fit costs ~25 s of fixed Ray Train overhead (measured here: worker start, process group,
wind-down), so the module runs three fits on tiny subsets against one embedded Ray instance.
"""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import pytest

from aar_ray import train
from aar_ray.config import ConfigError, FinetuneConfig, StudentConfig
from aar_ray.w2s.finetune import MODEL_DIR, PREDICTIONS, FinetuneStudents
from aar_ray.w2s.student import StudentInputs
from aar_ray.w2s.tasks import load_task
from aar_ray.w2s.trial import run_method

GPU_SMOKE = Path(__file__).resolve().parents[1] / "jobs" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def ray_local():
    import ray

    train.install()  # fits go through Ray Train
    if ray.is_initialized():  # another module's instance: use it, leave it running
        yield
        return
    # explicit address="local": a bare ray.init() would join a cluster already on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs() -> StudentInputs:
    data = load_task("compositional", 512)
    weak = np.random.default_rng(0).dirichlet([2.0, 2.0], 48).astype(np.float32)
    return StudentInputs(seed=0, n_classes=2, weak=weak, texts_train=data.texts[:48],
                         texts_test=data.texts[48:80])


def _cfg(tmp_path: Path, **kw) -> FinetuneConfig:
    return FinetuneConfig(num_workers=1, cpus_per_worker=1, epochs=1, batch_size=16,
                          max_length=32, storage_path=str(tmp_path), start_timeout_s=30, **kw)


def _check_probs(p: np.ndarray, n: int) -> None:
    assert p.shape == (n, 2)
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)


def test_config_rejects_unknown_or_untrainable_model() -> None:
    with pytest.raises(ConfigError, match="strong_model"):
        FinetuneConfig(strong_model="nope").validate("finetune")
    with pytest.raises(ConfigError, match="no trainable weights"):
        FinetuneConfig(strong_model="glove50").validate("finetune")


def test_gpu_smoke_refuses_without_gpu(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert runpy.run_path(str(GPU_SMOKE))["main"]([]) == 2
    assert "no GPU visible" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_full_finetune_minilm(ray_local, inputs: StudentInputs, tmp_path: Path) -> None:
    students = FinetuneStudents(inputs, _cfg(tmp_path), StudentConfig(mode="finetune"))
    assert (students.n_train, students.n_classes) == (48, 2)
    student = students.new(seed_offset=1)
    weights = np.ones(48, np.float32)
    weights[:16] = 0.0  # a zero-weight batch is skipped, as in head mode
    student.fit(inputs.weak, weights)
    _check_probs(student.predict("train"), 48)
    _check_probs(student.predict("test"), 32)
    ckpt = Path(student.checkpoint_path)
    assert ckpt.is_dir() and tmp_path in ckpt.parents
    with np.load(ckpt / PREDICTIONS) as z:
        np.testing.assert_array_equal(z["test"], student.predict("test"))
    assert (ckpt / MODEL_DIR / "config.json").exists()
    assert (ckpt / MODEL_DIR / "model.safetensors").exists()
    m = student.metrics
    assert m["tokens_per_s"] > 0 and m["examples_per_s"] > 0 and np.isfinite(m["train_loss"])
    assert m["params_trainable"] == m["params"]  # full fine-tuning


@pytest.mark.ray
@pytest.mark.slow
def test_method_runs_unchanged_with_lora_tiny_qwen3(ray_local, inputs: StudentInputs,
                                                    tmp_path: Path) -> None:
    # aux_confidence passes its own bound-method loss: it must reach the Ray Train worker
    cfg = _cfg(tmp_path, strong_model="tiny-qwen3", lora_r=4, lr=1e-3)
    probs = run_method("aux_confidence", {"warmup": 0.5}, inputs,
                       StudentConfig(mode="finetune"), cfg)
    _check_probs(probs, 32)
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("finetune-tiny-qwen3-")]
    (ckpt,) = [c for c in run.glob("checkpoint_*") if c.is_dir()]  # not the .json
    assert (ckpt / MODEL_DIR / "adapter_config.json").exists()  # the adapter, not the model
    assert not (ckpt / MODEL_DIR / "model.safetensors").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_gpu_smoke_on_cpu(ray_local, tmp_path: Path, capsys) -> None:
    main = runpy.run_path(str(GPU_SMOKE))["main"]
    assert main(["--cpu", "--part", "bench", "--storage-path", str(tmp_path)]) == 0
    # "key<padding>  value" rows; keys have single spaces, the padding at least two
    rows = dict(re.split(r"\s{2,}", ln, maxsplit=1)
                for ln in capsys.readouterr().out.splitlines() if re.search(r"\S\s{2,}\S", ln))
    assert float(rows["tokens/s"].split()[0]) > 0
    assert rows["steps / step time"].endswith(" ms") and rows["peak GPU memory"] == "0.00 GiB"
    assert rows["MFU"].startswith("n/a")  # no GPU: no peak to compare with


@pytest.mark.ray
@pytest.mark.slow
def test_too_many_workers_fail_fast(ray_local, tmp_path: Path) -> None:
    import ray

    # more workers than CPUs: Ray Train would retry forever without the start timeout
    cfg = _cfg(tmp_path, strong_model="tiny-qwen3")
    cfg.num_workers, cfg.start_timeout_s = int(ray.cluster_resources()["CPU"]) + 1, 5
    student = FinetuneStudents(StudentInputs(0, 2, np.full((4, 2), 0.5, np.float32),
                                             texts_train=["a b"] * 4, texts_test=["c"] * 2),
                               cfg).new()
    with pytest.raises(RuntimeError, match="could not start .* within 5 s"):
        student.fit(np.full((4, 2), 0.5, np.float32))
