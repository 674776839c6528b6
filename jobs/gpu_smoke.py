"""GPU smoke test for a node with no internet, in well under 8 minutes on one GPU:

1. bench: one LoRA fine-tune (bf16) on Ray Train of each of the seed's two model classes at their
   real sizes, with random weights built from configs (no download): Qwen1.5-0.5B (weak) and
   Qwen3-4B (strong). Reports tokens/s, step time, peak GPU memory and MFU.
2. trial: the recipe of jobs/configs/gpu_qwen.yaml (teacher: finetune, student: finetune, its LoRA
   settings) at toy size with tiny random Qwen2 -> Qwen3 models on the generated compositional
   task: weak fine-tune -> weak labels -> ceiling and student fine-tunes -> PGR.

    python jobs/gpu_smoke.py          # on a GPU node (refuses to run without a GPU)
    python jobs/gpu_smoke.py --cpu    # tiny models on CPU: what the tests run
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_CONFIG = REPO / "jobs" / "configs" / "gpu_qwen.yaml"
# dense bf16 peak TFLOP/s per GPU (vendor data sheets, no sparsity); first match wins
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L4", 121.0),
    ("A10G", 125.0),
]
# (models, examples, batch size, max tokens) per device
BENCH = {"gpu": (["random-qwen1.5-0.5b", "random-qwen3-4b"], 256, 8, 512),
         "cpu": (["tiny-qwen3"], 32, 8, 64)}
TOY = {"gpu": (2000, 400, 128), "cpu": (120, 40, 32)}  # examples, test size, max tokens


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny models on CPU (no GPU needed)")
    p.add_argument("--part", choices=["bench", "trial", "all"], default="all")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="peak bf16 TFLOP/s per device; 0 = from the detected GPU's name")
    p.add_argument("--storage-path", default="", help="Ray Train results; '' = a temp dir")
    p.add_argument("--cache-dir", default="", help="teacher/ceiling caches; '' = a temp dir")
    return p.parse_args(argv)


def bench(base, texts: list[str], labels, model: str, batch: int, max_length: int,
          peak: float | None) -> list[tuple[str, str]]:
    """One LoRA fine-tune; the rows to print."""
    from aar_ray.w2s.finetune import fine_tune
    from aar_ray.w2s.student import one_hot

    cfg = replace(base, strong_model=model, batch_size=batch, max_length=max_length, epochs=1)
    r = fine_tune(cfg, 0, 2, texts, one_hot(labels, 2), {"test": texts[:batch]}, role="bench")
    m = r.metrics
    # forward 2N + backward 2N FLOPs per token over the non-embedding weights; LoRA's frozen
    # weights get no weight gradients (full fine-tuning would add 2N); attention not counted
    achieved = 4 * m["params_nonembed"] * m["tokens_per_s"]
    mfu = achieved / (peak * 1e12 * m["world_size"]) if peak else None
    return [("model", f"{model} (LoRA r={cfg.lora_r}, bf16={cfg.use_gpu and cfg.bf16})"),
            ("params (non-embedding)", f"{m['params']:,} ({m['params_nonembed']:,})"),
            ("params trainable", f"{m['params_trainable']:,}"),
            ("batch x tokens", f"{batch} x {max_length}"),
            ("steps / step time", f"{m['steps']} / {1000 * m['step_s']:.0f} ms"),
            ("tokens/s", f"{m['tokens_per_s']:.0f} (padded {m['padded_tokens_per_s']:.0f})"),
            ("peak GPU memory", f"{m['peak_gpu_mem_gib']:.2f} GiB"),
            ("achieved TFLOP/s", f"{achieved / 1e12:.3f}"),
            ("MFU", f"{100 * mfu:.2f}%" if mfu is not None else "n/a (no GPU peak known)"),
            ("train loss", f"{m['train_loss']:.3f}"),
            ("fit wall time", f"{m['fit_s']:.1f} s (Ray Train overhead included)")]


def toy_trial(gpu: bool, storage: str, cache_dir: str):
    """gpu_qwen.yaml's recipe at toy size: its teacher and student modes and fine-tuning
    settings, with tiny random models, a generated task and one Ray Train worker."""
    from aar_ray.config import load_campaign
    from aar_ray.w2s.trial import TrialConfig, run_trial

    cfg = load_campaign(GPU_CONFIG)
    n, test_size, max_length = TOY["gpu" if gpu else "cpu"]
    setting = replace(cfg.setting, task="compositional", weak="tiny-qwen2", strong="tiny-qwen3",
                      max_examples=n, test_size=test_size)
    finetune = replace(cfg.finetune, strong_model=setting.strong, use_gpu=gpu, num_workers=1,
                       cpus_per_worker=1, max_length=max_length, storage_path=storage,
                       start_timeout_s=120)
    trial = TrialConfig(setting, "vanilla", {}, [0], cfg.student, finetune)
    return run_trial(trial, Path(cache_dir))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in (("RAY_AUTH_MODE", "disabled"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(key, value)
    import numpy as np
    import torch

    from aar_ray import train
    from aar_ray.config import load_campaign
    from aar_ray.train.launcher import ensure_ray
    from aar_ray.w2s.tasks import load_task

    gpu = torch.cuda.is_available() and not args.cpu
    if not gpu and not args.cpu:
        print("gpu_smoke: no GPU visible to torch (torch.cuda.is_available() is False, "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "pass --cpu to run the tiny CPU version", file=sys.stderr)
        return 2
    train.install()
    base = load_campaign(GPU_CONFIG).finetune
    base = replace(base, use_gpu=gpu, num_workers=1, cpus_per_worker=1, start_timeout_s=120,
                   storage_path=args.storage_path or tempfile.mkdtemp(prefix="gpu_smoke_"))
    ensure_ray(base)
    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    peak = args.peak_tflops or (peak_tflops(device) if gpu else None)
    print(f"device: {device}; Ray Train storage: {base.storage_path}")
    ok = True
    if args.part in ("bench", "all"):
        models, n, batch, max_length = BENCH["gpu" if gpu else "cpu"]
        data = load_task("compositional", n + 64)
        # long texts (several sentences each) so that batches are max_length tokens, as in the
        # seed's task; the labels only give the loss something to fit
        texts = [" ".join(data.texts[i:i + 64]) for i in range(n)]
        for model in models:
            rows = bench(base, texts, data.labels[:n], model, batch, max_length, peak)
            width = max(len(k) for k, _ in rows)
            print("\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n")
            ok &= "nan" not in dict(rows)["train loss"]
    if args.part in ("trial", "all"):
        cache = args.cache_dir or tempfile.mkdtemp(prefix="gpu_smoke_cache_")
        result = toy_trial(gpu, base.storage_path, cache)
        s = result.summary()
        (r,) = s["per_seed"]
        pgr = "n/a (the ceiling does not beat the teacher)" if r["pgr"] is None \
            else f"{r['pgr']:.3f}"
        print(f"toy W2S trial ({s['setting']}, teacher: {result.config.setting.teacher}, "
              f"student: {result.config.student.mode}): weak_acc {r['weak_acc']:.3f}  "
              f"ceiling_acc {r['ceiling_acc']:.3f}  transfer_acc {r['transfer_acc']:.3f}  "
              f"PGR {pgr}")
        ok &= all(np.isfinite(r[k]) for k in ("weak_acc", "ceiling_acc", "transfer_acc"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
