"""GPU smoke test of the finetune student: one short fine-tuning run through Ray Train, then
throughput (tokens/s) and an MFU estimate. Run it on a GPU node before a finetune campaign:

    python jobs/gpu_smoke.py                          # tiny random Qwen3, no download
    python jobs/gpu_smoke.py --model qwen3-4b-base --lora-r 16 --max-length 256
    python jobs/gpu_smoke.py --allow-cpu --steps small   # the CPU path (tests)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

# dense bf16 peak TFLOP/s per GPU (vendor data sheets, no sparsity); first match wins
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L4", 121.0),
]
# (unlabelled texts trained on, test texts predicted) from the 512-example compositional task
SIZES = {"small": (64, 32), "medium": (256, 64), "full": (448, 64)}


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-qwen3", help="a models.MODELS name with hf_path")
    p.add_argument("--steps", default="medium", choices=sorted(SIZES), help="run size")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lora-r", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="peak bf16 TFLOP/s per device; 0 = from the detected GPU's name")
    p.add_argument("--storage-path", default="", help="Ray Train results; '' = a temp dir")
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU when no GPU is visible")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in (("RAY_AUTH_MODE", "disabled"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not args.allow_cpu:
        print("gpu_smoke: no GPU visible to torch (torch.cuda.is_available() is False, "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "pass --allow-cpu to run the CPU path", file=sys.stderr)
        return 2
    import numpy as np
    import ray

    from aar_ray.config import FinetuneConfig
    from aar_ray.w2s.finetune import FinetuneStudent
    from aar_ray.w2s.student import one_hot
    from aar_ray.w2s.tasks import load_task

    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    if not ray.is_initialized():  # never a bare ray.init(): it would join a running cluster
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False)

    data = load_task("compositional", 512)
    n_train, n_test = SIZES[args.steps]
    texts_train, texts_test = data.texts[:n_train], data.texts[n_train:n_train + n_test]
    cfg = FinetuneConfig(
        num_workers=args.num_workers, use_gpu=gpu, cpus_per_worker=args.cpus_per_worker,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        lora_r=args.lora_r, strong_model=args.model,
        storage_path=args.storage_path or tempfile.mkdtemp(prefix="gpu_smoke_"))
    cfg.validate("gpu_smoke")
    student = FinetuneStudent(texts_train, texts_test, len(data.classes), cfg, seed=0)
    # true labels: this checks the training path and its speed, not weak-to-strong transfer
    student.fit(one_hot(data.labels[:n_train], len(data.classes)))
    m = student.metrics
    acc = float((student.predict("test").argmax(1) == data.labels[n_train:n_train + n_test])
                .mean())

    # 6·N·tokens: forward + backward over the non-embedding weights (for LoRA an upper bound:
    # frozen weights get no weight gradients)
    peak = args.peak_tflops or (peak_tflops(device) if gpu else None)
    achieved = 6 * m["params_nonembed"] * m["tokens_per_s"]
    mfu = achieved / (peak * 1e12 * m["world_size"]) if peak else None
    rows = [("model", args.model), ("device", f"{device} x{m['world_size']}"),
            ("params (non-embedding)", f"{m['params']:,} ({m['params_nonembed']:,})"),
            ("params trainable", f"{m['params_trainable']:,}"),
            ("train steps / time", f"{m['steps']} / {m['train_s']:.2f} s"),
            ("fit() wall time", f"{m['fit_s']:.1f} s (Ray Train overhead included)"),
            ("examples/s", f"{m['examples_per_s']:.1f}"),
            ("tokens/s", f"{m['tokens_per_s']:.0f} (padded {m['padded_tokens_per_s']:.0f})"),
            ("achieved TFLOP/s", f"{achieved / 1e12:.3f}"),
            ("peak bf16 TFLOP/s", f"{peak:.0f}" if peak else "unknown (--peak-tflops)"),
            ("MFU", f"{100 * mfu:.2f}%" if mfu is not None else "n/a"),
            ("train loss / test acc", f"{m['train_loss']:.3f} / {acc:.3f}"),
            ("checkpoint", str(student.checkpoint_path))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if not np.isfinite(m["train_loss"]):
        print("gpu_smoke: training loss is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
