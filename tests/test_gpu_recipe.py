"""The GPU config's recipe (jobs/configs/gpu_qwen.yaml: the weak model fine-tuned as teacher, the
strong model fine-tuned as student and ceiling) on CPU, and the pins and caches it relies on.

The end-to-end test runs it on Ray Train with tiny random Qwen2 -> Qwen3 models: three fits of
~25 s fixed Ray Train overhead each. The other tests install a fake Trainer and need no Ray.
"""
from __future__ import annotations

import dataclasses
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

from aar_ray import train
from aar_ray.config import ConfigError, FinetuneConfig, SettingConfig, load_campaign
from aar_ray.w2s import finetune, pgr
from aar_ray.w2s.models import MODELS
from aar_ray.w2s.pinning import check_loaded_revision, check_revision
from aar_ray.w2s.tasks import hub
from aar_ray.w2s.trial import Setting, revisions, teacher

REPO = Path(__file__).resolve().parents[1]
GPU_CONFIG = REPO / "jobs" / "configs" / "gpu_qwen.yaml"
GPU_SMOKE = REPO / "jobs" / "gpu_smoke.py"
COMMIT = re.compile(r"[0-9a-f]{40}")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():  # another module's instance: use it, leave it running
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_gpu_config_trains_its_teacher_the_seeds_way_on_pinned_data_and_models():
    cfg = load_campaign(GPU_CONFIG)
    assert (cfg.setting.teacher, cfg.student.mode) == ("finetune", "finetune")
    for sc in [cfg.setting, *cfg.audit.settings]:
        assert sc.teacher == "finetune", sc.label
        for what, revision in revisions(sc).items():
            assert revision and COMMIT.fullmatch(revision), (sc.label, what, revision)


def test_provenance_records_the_pinned_revisions_and_the_teacher_recipe():
    from aar_ray.lab.trials import provenance

    cfg = load_campaign(GPU_CONFIG)
    prov = provenance(cfg, "vanilla")
    assert prov["revisions"] == {"task": hub.REVISIONS["Anthropic/hh-rlhf"],
                                 "weak": MODELS.get("qwen1.5-0.5b-chat").revision,
                                 "strong": MODELS.get("qwen3-4b-base").revision}
    assert prov["teacher"] == "finetune" and prov["finetune"]["lora_r"] == 16
    assert "storage_path" not in prov["finetune"]  # where checkpoints go changes no result
    local = dataclasses.replace(cfg, setting=SettingConfig("compositional", "tiny-qwen2",
                                                           "tiny-qwen3", teacher="finetune"))
    assert set(provenance(local, "vanilla")["revisions"].values()) == {None}


def test_unpinned_hub_ids_fail_loudly_and_local_models_need_no_pin(tmp_path, monkeypatch):
    for bad in (None, "main", "906bfd4"):
        with pytest.raises(RuntimeError, match="pin a revision"):
            check_revision("Qwen/Qwen3-4B-Base", bad)
    assert check_revision(str(tmp_path), None) == {}  # packaged and random models: a local dir
    assert check_revision("Qwen/Qwen3-4B-Base", "a" * 40) == {"revision": "a" * 40}
    with pytest.raises(RuntimeError, match="is pinned"):
        check_loaded_revision("Qwen/Qwen3-4B-Base", "a" * 40, "b" * 40)
    # the loaders check before touching the network or the datasets library
    spec = dataclasses.replace(MODELS.get("qwen3-4b-base"), revision=None)
    monkeypatch.setattr(MODELS, "get", lambda name: spec)
    with pytest.raises(RuntimeError, match="pin a revision"):
        finetune.load_model("qwen3-4b-base", 2)
    monkeypatch.setitem(hub.REVISIONS, "Anthropic/hh-rlhf", None)
    with pytest.raises(RuntimeError, match="pin a revision"):
        hub.load_chat_preference.__wrapped__()


def test_finetune_teacher_needs_a_trainable_weak_model():
    with pytest.raises(ConfigError, match="no trainable weights: use teacher: probe"):
        SettingConfig("compositional", "bow", "tiny-qwen3", teacher="finetune").validate("s")
    with pytest.raises(ConfigError, match="no features to probe: use teacher: finetune"):
        SettingConfig("compositional", "tiny-qwen2", "tiny-qwen3").validate("s")


def test_finetune_teacher_trains_on_the_labelled_truth_and_is_cached_by_recipe(
        tmp_path, monkeypatch):
    jobs: list[finetune.FitJob] = []

    def fake_trainer(job: finetune.FitJob) -> finetune.FitResult:
        jobs.append(job)
        return finetune.FitResult({k: np.full((len(v), 2), 0.5, np.float32)
                                   for k, v in job.predict.items()})

    monkeypatch.setattr(finetune, "_trainer", fake_trainer)
    sc = SettingConfig("compositional", "tiny-qwen2", "tiny-qwen3", max_examples=100,
                       test_size=20, teacher="finetune")
    ft = FinetuneConfig(strong_model="tiny-qwen3", lora_r=4)
    s = Setting.load(sc, tmp_path, ft)
    out = teacher(s, 0)
    (job,) = jobs
    sp = s.splits(0)
    assert job.cfg.strong_model == "tiny-qwen2" and job.cfg.lora_r == 4  # the weak model
    assert job.texts == s.texts(sp.labelled)
    np.testing.assert_array_equal(job.targets.argmax(1), s.data.labels[sp.labelled])
    assert job.predict == {"train": s.texts(sp.unlabelled), "test": s.texts(sp.test)}
    assert out["train"].shape == (len(sp.unlabelled), 2) and out["test"].shape == (20, 2)
    teacher(Setting.load(sc, tmp_path, dataclasses.replace(ft, storage_path="/elsewhere")), 0)
    assert len(jobs) == 1  # cached: where checkpoints go is not part of the recipe
    teacher(Setting.load(sc, tmp_path, dataclasses.replace(ft, lora_r=8)), 0)
    assert len(jobs) == 2  # another recipe, another teacher
    with pytest.raises(ValueError, match="no finetune config"):
        teacher(Setting.load(sc, tmp_path), 1)


def test_without_an_installed_trainer_fine_tuning_says_what_to_do(monkeypatch):
    monkeypatch.setattr(finetune, "_trainer", None)
    with pytest.raises(RuntimeError, match=r"aar_ray.train.install\(\)"):
        finetune.fine_tune(FinetuneConfig(strong_model="tiny-qwen3"), 0, 2, ["a b"],
                           np.eye(2, dtype=np.float32)[:1], {"test": ["c"]})


@pytest.mark.ray
@pytest.mark.slow
def test_gpu_recipe_end_to_end_on_cpu(ray_local, tmp_path):
    from safetensors.numpy import load_file

    train.install()
    runs = tmp_path / "runs"
    result = runpy.run_path(str(GPU_SMOKE))["toy_trial"](False, str(runs), str(tmp_path / "c"))
    assert result.config.setting.teacher == "finetune"
    assert result.config.student.mode == "finetune" and result.config.finetune.lora_r == 16

    # the weak model was fine-tuned: its LoRA B matrices start at zero and have moved
    (teacher_run,) = runs.glob("teacher-tiny-qwen2-*")
    (adapter,) = teacher_run.glob("checkpoint_*/model/adapter_model.safetensors")
    lora_b = [v for k, v in load_file(str(adapter)).items() if "lora_B" in k]
    assert lora_b and all(np.abs(b).sum() > 0 for b in lora_b)
    # its labels, on the unlabelled and test splits, cached for the scorer
    (labels,) = (tmp_path / "c" / "weak").glob("*.npz")
    with np.load(labels) as z:
        assert z["train"].shape[1] == 2 and np.allclose(z["train"].sum(1), 1, atol=1e-4)
    # the ceiling and the student: the strong model fine-tuned twice
    assert len(list(runs.glob("finetune-tiny-qwen3-*"))) == 2

    (r,) = result.seeds
    for acc in (r.weak_acc, r.ceiling_acc, r.transfer_acc):
        assert 0.0 <= acc <= 1.0
    assert r.pgr == pgr.pgr(r.transfer_acc, r.weak_acc, r.ceiling_acc)
