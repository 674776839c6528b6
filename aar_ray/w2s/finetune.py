"""The `finetune` student mode: each `fit` fine-tunes the strong transformer in one Ray Train run.

Methods see the same `Student` interface as in head mode. A `fit` call launches one
`TorchTrainer` run (about 25 s of fixed Ray Train overhead, NOTES-ray §4). Rank 0 then predicts
both splits and reports them, together with the trained weights (or the LoRA adapter), as the
run's checkpoint; the driver reads the predictions back from that checkpoint.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aar_ray.config import FinetuneConfig, StudentConfig
from aar_ray.w2s.student import LossFn, soft_cross_entropy

if TYPE_CHECKING:
    from aar_ray.w2s.trial import StudentInputs

PREDICTIONS = "predictions.npz"
MODEL_DIR = "model"
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# LoRA per architecture: (adapted layers, layers trained in full). The new classification head
# must train in full; BERT's pooler sits between the encoder and that head, so it does too.
_QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
LORA_LAYERS: dict[str, tuple[list[str] | str, list[str]]] = {
    "bert": (["query", "key", "value"], ["classifier", "pooler"]),
    "qwen3": (_QKVO, ["score"]), "qwen2": (_QKVO, ["score"]), "llama": (_QKVO, ["score"]),
}


def ensure_ray(cfg: FinetuneConfig) -> None:
    """Ray is the caller's to start; as a fallback, start a local instance. Never a bare
    `ray.init()`: that joins whatever cluster already runs on this machine."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"include_dashboard": False}
    if address == "local":
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(np.ceil(cfg.cpus_per_worker)))
    ray.init(address=address, **kwargs)


def load_model(name: str, n_classes: int, lora_r: int = 0, dtype: Any = None):
    """Tokenizer and a sequence classifier for model spec `name`; random weights from the
    spec's tiny config when it has one (no download), else pretrained weights from `hf_path`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aar_ray.w2s.models import MODELS

    spec = MODELS.get(name)
    if spec.hf_path is None:
        raise ValueError(f"model {name!r} has no trainable weights (no hf_path)")
    path = spec.hf_path()
    tok = AutoTokenizer.from_pretrained(path)
    if spec.tiny_config is not None:
        config = spec.tiny_config()
        config.num_labels = n_classes
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=n_classes, dtype=dtype or torch.float32)
    if tok.pad_token is None:  # Qwen-style tokenizers may ship without one
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:  # decoder classifiers pool the last non-pad token
        model.config.pad_token_id = tok.pad_token_id
    if lora_r > 0:
        from peft import LoraConfig, TaskType, get_peft_model

        targets, full = LORA_LAYERS.get(model.config.model_type, ("all-linear", []))
        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
            target_modules=targets, modules_to_save=list(full)))
        for p in model.parameters():  # trainable copies stay fp32 even over a bf16 base
            if p.requires_grad:
                p.data = p.data.float()
    return tok, model


def _batches(tok, enc: dict[str, list], idx: list[int], device) -> dict[str, Any]:
    batch = tok.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def train_func(config: dict[str, Any]) -> None:
    """One Ray Train worker: fine-tune on (targets, weights), then rank 0 predicts and saves."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config["seed"])  # same init on every rank; DDP also broadcasts rank 0's
    lora, on_gpu = config["lora_r"] > 0, device.type == "cuda"
    bf16 = on_gpu and config["bf16"]
    # a frozen LoRA base can sit in bf16 on GPUs (half the memory); full fine-tuning keeps fp32
    tok, model = load_model(config["model"], config["n_classes"], config["lora_r"],
                            torch.bfloat16 if bf16 and lora else None)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model = ray.train.torch.prepare_model(model)
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

    def encode(texts: list[str]) -> dict[str, list]:
        return dict(tok(texts, truncation=True, max_length=config["max_length"]))

    enc = encode(config["texts_train"])
    y = torch.as_tensor(config["targets"], dtype=torch.float32)
    w = torch.as_tensor(config["weights"], dtype=torch.float32)
    loss_fn: LossFn = config["loss"] or soft_cross_entropy
    # the same seed on every rank: one permutation per epoch, split between ranks
    sampler = DistributedSampler(range(len(y)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=config["seed"])
    bs = config["batch_size"]
    steps_per_epoch = -(-len(sampler) // bs)
    total = config["epochs"] * steps_per_epoch
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config["lr"])
    model.train()
    step, tokens, padded, examples, losses = 0, 0, 0, 0, []
    t0 = time.perf_counter()
    for epoch in range(config["epochs"]):
        sampler.set_epoch(epoch)
        order = list(sampler)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            wb = w[idx].to(device)
            live = wb.sum()
            if world > 1:  # every rank must skip together, or DDP's gradient all-reduce hangs
                dist.all_reduce(live)
            if live <= 0:
                step += 1
                continue
            batch = _batches(tok, enc, idx, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch).logits
            value = loss_fn(logits.float(), y[idx].to(device), wb, step / total)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            step += 1
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            examples += len(idx)
            if epoch == config["epochs"] - 1:
                losses.append(float(value.detach()))
    if on_gpu:
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    counts = torch.tensor([tokens, padded, examples], dtype=torch.float64, device=device)
    if world > 1:  # throughput of the whole worker group, not of rank 0 alone
        dist.all_reduce(counts)
    tokens, padded, examples = counts.tolist()
    metrics = {"train_loss": float(np.mean(losses)) if losses else float("nan"),
               "train_s": train_s, "steps": step, "world_size": world,
               "examples_per_s": examples / train_s, "tokens_per_s": tokens / train_s,
               "padded_tokens_per_s": padded / train_s, "params": n_params,
               "params_nonembed": n_params - n_embed, "params_trainable": n_trainable}
    if rank != 0:
        ray.train.report(metrics)  # a barrier: every rank reports the same number of times
        return
    inner.eval()
    probs = {}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for split in ("train", "test"):
            texts = config[f"texts_{split}"]
            e = encode(texts)
            out = np.zeros((len(texts), config["n_classes"]), np.float32)
            order = np.argsort([len(ids) for ids in e["input_ids"]])  # less padding per batch
            for i in range(0, len(texts), 2 * bs):
                idx = order[i:i + 2 * bs].tolist()
                logits = inner(**_batches(tok, e, idx, device)).logits.float()
                out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
            probs[split] = out
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / PREDICTIONS, **probs)
        inner.save_pretrained(Path(d) / MODEL_DIR)  # for LoRA: the adapter and trained head
        tok.save_pretrained(Path(d) / MODEL_DIR)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


class FinetuneStudent:
    """A strong model fine-tuned from scratch by each `fit` (one Ray Train run)."""

    def __init__(self, texts_train: list[str], texts_test: list[str], n_classes: int,
                 cfg: FinetuneConfig, seed: int) -> None:
        self.texts = {"train": texts_train, "test": texts_test}
        self.n_classes, self.cfg, self.seed = n_classes, cfg, seed
        self.probs: dict[str, np.ndarray] = {}
        self.metrics: dict[str, Any] = {}
        self.checkpoint_path: str | None = None  # the trained model and predictions
        self.fit_s = 0.0  # wall time of the whole fit, Ray Train overhead included

    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None) -> None:
        import ray.train
        from ray.train.torch import TorchTrainer

        n = len(self.texts["train"])
        targets = np.asarray(targets, dtype=np.float32)
        weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        if targets.shape != (n, self.n_classes) or weights.shape != (n,):
            raise ValueError(f"targets {targets.shape} / weights {weights.shape} do not match "
                             f"({n}, {self.n_classes}) / ({n},)")
        cfg = self.cfg
        ensure_ray(cfg)
        storage = cfg.storage_path or str(_default_storage())
        name = f"finetune-{cfg.strong_model}-{uuid.uuid4().hex[:10]}"  # a reused name resumes
        trainer = TorchTrainer(
            train_func,
            train_loop_config={
                "model": cfg.strong_model, "n_classes": self.n_classes, "seed": self.seed,
                "texts_train": self.texts["train"], "texts_test": self.texts["test"],
                "targets": targets, "weights": weights, "loss": loss, "lr": cfg.lr,
                "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "max_length": cfg.max_length, "lora_r": cfg.lora_r, "bf16": cfg.bf16},
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                resources_per_worker={"CPU": cfg.cpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=name, storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=0,
                                                       controller_failure_limit=0)))
        t0 = time.perf_counter()
        # read by the driver and passed on to the controller: without it, workers that cannot
        # be placed (workers > CPUs) make Ray Train retry forever
        old = os.environ.get(START_TIMEOUT_ENV)
        os.environ[START_TIMEOUT_ENV] = str(cfg.start_timeout_s)
        try:
            result = trainer.fit()
        except ray.train.ControllerError as e:
            total, free = (_cpu_gpu(r) for r in (ray.cluster_resources(),
                                                 ray.available_resources()))
            raise RuntimeError(
                f"Ray Train could not start {cfg.num_workers} worker(s) x "
                f"{cfg.cpus_per_worker} CPU{' + 1 GPU' if cfg.use_gpu else ''} within "
                f"{cfg.start_timeout_s} s (finetune.start_timeout_s): the cluster has {total}, "
                f"{free} free") from e
        finally:
            if old is None:
                os.environ.pop(START_TIMEOUT_ENV, None)
            else:
                os.environ[START_TIMEOUT_ENV] = old
        self.fit_s = time.perf_counter() - t0
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train run {name} reported no checkpoint")
        with result.checkpoint.as_directory() as d, np.load(Path(d) / PREDICTIONS) as z:
            self.probs = {"train": z["train"], "test": z["test"]}
        self.checkpoint_path = result.checkpoint.path
        self.metrics = {**(result.metrics or {}), "fit_s": self.fit_s}

    def predict(self, split: str) -> np.ndarray:
        if not self.probs:
            raise RuntimeError("predict() before fit()")
        return self.probs[split]


class FinetuneStudents:
    """Fresh fine-tuning students on one seed's texts (the `StudentFactory` of finetune mode).

    Training knobs come from `FinetuneConfig` (its `batch_size` is per worker); the
    `StudentConfig` is kept for the interface only."""

    def __init__(self, inputs: StudentInputs, cfg: FinetuneConfig,
                 student: StudentConfig | None = None) -> None:
        if inputs.texts_train is None or inputs.texts_test is None:
            raise ValueError("finetune mode needs texts_train and texts_test in StudentInputs")
        cfg.validate("finetune")
        self.inputs, self.cfg, self.student = inputs, cfg, student
        self.n_train, self.n_classes = len(inputs.texts_train), inputs.n_classes

    def new(self, seed_offset: int = 0) -> FinetuneStudent:
        return FinetuneStudent(self.inputs.texts_train, self.inputs.texts_test, self.n_classes,
                               self.cfg, self.inputs.seed * 1000 + seed_offset)


def _cpu_gpu(resources: dict[str, float]) -> dict[str, float]:
    return {k: resources.get(k, 0.0) for k in ("CPU", "GPU")}


def _default_storage() -> Path:
    from aar_ray.w2s.features import default_cache_dir

    return default_cache_dir() / "ray_results"
