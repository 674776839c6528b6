"""Fine-tuning a transformer as pure science: the model (full or LoRA), the training loop, and the
`finetune` student mode built on them. No Ray here.

A run is described as data (`FitJob`) and handed to the `Trainer` the caller installed with
`use_trainer` (the lab and the CLI install `aar_ray.train`'s Ray Train launcher). The launcher
runs `train_loop` on each of its workers through a `Worker`: rank, device, how to wrap the model
for data parallelism and how to report. Rank 0 then predicts the job's prediction splits and
saves them with the trained weights (or the LoRA adapter) as the run's checkpoint.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aar_ray.config import ConfigError, FinetuneConfig, StudentConfig

if TYPE_CHECKING:
    from aar_ray.w2s.student import EarlyStopping, LossFn, StudentInputs

PREDICTIONS = "predictions.npz"
MODEL_DIR = "model"
# LoRA per architecture: (adapted layers, layers trained in full). The new classification head
# must train in full; BERT's pooler sits between the encoder and that head, so it does too.
_QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
LORA_LAYERS: dict[str, tuple[list[str] | str, list[str]]] = {
    "bert": (["query", "key", "value"], ["classifier", "pooler"]),
    "qwen3": (_QKVO, ["score"]), "qwen2": (_QKVO, ["score"]), "llama": (_QKVO, ["score"]),
}


@dataclass(frozen=True)
class FitJob:
    """One fine-tuning run as data: train `cfg.strong_model` on (texts, targets, weights), then
    predict each of `predict`'s named text lists."""

    name: str  # unique per run: a reused name makes Ray Train resume the old run
    cfg: FinetuneConfig
    seed: int
    n_classes: int
    texts: list[str]
    targets: np.ndarray  # (n, C) soft targets
    weights: np.ndarray  # (n,)
    predict: dict[str, list[str]]
    loss: LossFn | None = None  # None = soft cross-entropy
    epochs: int | None = None  # None = cfg.epochs
    early_stopping: EarlyStopping | None = None  # scored on `texts` after every epoch


@dataclass
class FitResult:
    probs: dict[str, np.ndarray]  # per name in FitJob.predict: (n, C)
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint_path: str = ""  # the trained weights (or adapter) and predictions


Trainer = Callable[[FitJob], FitResult]  # a launcher: runs train_loop on its workers
_trainer: Trainer | None = None


def use_trainer(trainer: Trainer) -> None:
    """Install the launcher every fine-tuning run in this process goes through."""
    global _trainer
    _trainer = trainer


def run_fit(job: FitJob) -> FitResult:
    if _trainer is None:
        raise RuntimeError("no fine-tuning Trainer installed in this process: call "
                           "aar_ray.train.install() first (the lab, the CLI and jobs do)")
    t0 = time.perf_counter()
    result = _trainer(job)
    result.metrics["fit_s"] = time.perf_counter() - t0  # launcher overhead included
    return result


@dataclass(frozen=True)
class Worker:
    """What a launcher gives `train_loop` on each of its workers."""

    rank: int
    world: int
    device: Any  # torch.device
    prepare_model: Callable[[Any], Any]  # e.g. wrap in DistributedDataParallel
    report: Callable[[dict[str, Any], Path | None], None]  # metrics; rank 0: a checkpoint dir


def load_model(name: str, n_classes: int, lora_r: int = 0, dtype: Any = None,
               device: Any = None):
    """Tokenizer and a sequence classifier for model spec `name`: random weights built on
    `device` from the spec's config when it has one (no download), else pretrained weights from
    `hf_path` at the spec's pinned revision."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aar_ray.w2s.models import MODELS
    from aar_ray.w2s.pinning import check_loaded_revision, check_revision

    spec = MODELS.get(name)
    if spec.hf_path is None:
        raise ValueError(f"model {name!r} has no trainable weights (no hf_path)")
    path = spec.hf_path()
    pin = check_revision(path, spec.revision)
    tok = AutoTokenizer.from_pretrained(path, **pin)
    if spec.random_config is not None:
        config = spec.random_config()
        config.num_labels = n_classes
        # built where it trains: a 4B model initialised on the CPU first takes minutes
        with torch.device(device or "cpu"):
            model = AutoModelForSequenceClassification.from_config(
                config, dtype=dtype or torch.float32)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=n_classes, dtype=dtype or torch.float32, **pin)
        check_loaded_revision(path, spec.revision, getattr(model.config, "_commit_hash", None))
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


def loop_config(job: FitJob) -> dict[str, Any]:
    """`train_loop`'s input: plain values a launcher can ship to its workers."""
    cfg = job.cfg
    return {"model": cfg.strong_model, "n_classes": job.n_classes, "seed": job.seed,
            "texts": job.texts, "predict": job.predict, "targets": job.targets,
            "weights": job.weights, "loss": job.loss, "lr": cfg.lr,
            "epochs": cfg.epochs if job.epochs is None else job.epochs,
            "early_stopping": job.early_stopping,
            "batch_size": cfg.batch_size, "max_length": cfg.max_length, "lora_r": cfg.lora_r,
            "bf16": cfg.bf16}


def _predict(model, tok, encode, texts: list[str], n_classes: int, bs: int, device,
             bf16: bool) -> np.ndarray:
    import torch

    model.eval()
    e = encode(texts)
    out = np.zeros((len(texts), n_classes), np.float32)
    order = np.argsort([len(ids) for ids in e["input_ids"]])  # less padding per batch
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(texts), bs):
            idx = order[i:i + bs].tolist()
            logits = model(**_batches(tok, e, idx, device)).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


def train_loop(config: dict[str, Any], worker: Worker) -> None:
    """One worker: fine-tune on (targets, weights), then rank 0 predicts and saves. With early
    stopping, rank 0 scores every epoch on the training texts and tells the other ranks."""
    import tempfile

    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from aar_ray.w2s.student import Stopper, soft_cross_entropy

    rank, world, device = worker.rank, worker.world, worker.device
    torch.manual_seed(config["seed"])  # same init on every rank; DDP also broadcasts rank 0's
    lora, on_gpu = config["lora_r"] > 0, device.type == "cuda"
    bf16 = on_gpu and config["bf16"]
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    # a frozen LoRA base can sit in bf16 on GPUs (half the memory); full fine-tuning keeps fp32
    tok, model = load_model(config["model"], config["n_classes"], config["lora_r"],
                            torch.bfloat16 if bf16 and lora else None, device)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model = worker.prepare_model(model)
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

    def encode(texts: list[str]) -> dict[str, list]:
        return dict(tok(texts, truncation=True, max_length=config["max_length"]))

    enc = encode(config["texts"])
    y = torch.tensor(config["targets"], dtype=torch.float32)  # a copy: Ray's arrays are read-only
    w = torch.tensor(config["weights"], dtype=torch.float32)
    loss_fn: LossFn = config["loss"] or soft_cross_entropy
    # the same seed on every rank: one permutation per epoch, split between ranks
    sampler = DistributedSampler(range(len(y)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=config["seed"])
    bs = config["batch_size"]
    steps_per_epoch = -(-len(sampler) // bs)
    total = config["epochs"] * steps_per_epoch
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config["lr"])
    stopper = Stopper(config["early_stopping"]) if config["early_stopping"] else None
    trainable = {n: p for n, p in inner.named_parameters() if p.requires_grad}
    model.train()
    step, trained, tokens, padded, examples, losses = 0, 0, 0, 0, 0, []
    epochs_run = best_epoch = 0
    t0 = time.perf_counter()
    for epoch in range(config["epochs"]):
        sampler.set_epoch(epoch)
        losses = []  # of the last epoch trained
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
            trained += 1
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            examples += len(idx)
            losses.append(float(value.detach()))
        epochs_run = best_epoch = epoch + 1
        if stopper is not None:
            stop = torch.zeros(1, device=device)
            if rank == 0:
                probs = _predict(inner, tok, encode, config["texts"], config["n_classes"],
                                 2 * bs, device, bf16)
                stop[0] = float(stopper.update(epoch + 1, probs, lambda: {
                    n: p.detach().to("cpu", copy=True) for n, p in trainable.items()}))
                model.train()
            if world > 1:
                dist.broadcast(stop, 0)
            if stop.item():
                break
    if stopper is not None and stopper.rule.restore_best and rank == 0:
        with torch.no_grad():  # only rank 0 predicts and saves: the others keep their last
            for n, p in trainable.items():
                p.copy_(stopper.best_state[n])
        best_epoch = stopper.best_epoch
    if on_gpu:
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    counts = torch.tensor([tokens, padded, examples], dtype=torch.float64, device=device)
    if world > 1:  # throughput of the whole worker group, not of rank 0 alone
        dist.all_reduce(counts)
    tokens, padded, examples = counts.tolist()
    metrics = {"train_loss": float(np.mean(losses)) if losses else float("nan"),
               "train_s": train_s, "steps": step, "step_s": train_s / max(trained, 1),
               "world_size": world, "examples_per_s": examples / train_s,
               "tokens_per_s": tokens / train_s, "padded_tokens_per_s": padded / train_s,
               "params": n_params, "params_nonembed": n_params - n_embed,
               "params_trainable": n_trainable, "epochs_run": epochs_run,
               "best_epoch": best_epoch,
               "peak_gpu_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu
               else 0.0}
    if rank != 0:
        worker.report(metrics, None)  # a barrier: every rank reports the same number of times
        return
    probs = {split: _predict(inner, tok, encode, texts, config["n_classes"], 2 * bs, device,
                             bf16) for split, texts in config["predict"].items()}
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / PREDICTIONS, **probs)
        inner.save_pretrained(Path(d) / MODEL_DIR)  # for LoRA: the adapter and trained head
        tok.save_pretrained(Path(d) / MODEL_DIR)
        worker.report(metrics, Path(d))


def read_predictions(checkpoint_dir: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(checkpoint_dir) / PREDICTIONS) as z:
        return {k: z[k] for k in z.files}


def fine_tune(cfg: FinetuneConfig, seed: int, n_classes: int, texts: list[str],
              targets: np.ndarray, predict: dict[str, list[str]],
              weights: np.ndarray | None = None, loss: LossFn | None = None,
              role: str = "finetune", epochs: int | None = None,
              early_stopping: EarlyStopping | None = None) -> FitResult:
    """Train `cfg.strong_model` from its initial weights on `texts` and predict `predict`."""
    from aar_ray.w2s.student import check_fit_args

    check_fit_args(epochs, early_stopping)
    n = len(texts)
    targets = np.asarray(targets, dtype=np.float32)
    weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    if targets.shape != (n, n_classes) or weights.shape != (n,):
        raise ValueError(f"targets {targets.shape} / weights {weights.shape} do not match "
                         f"({n}, {n_classes}) / ({n},)")
    cfg.validate("finetune")
    name = f"{role}-{cfg.strong_model}-{uuid.uuid4().hex[:10]}"
    return run_fit(FitJob(name, cfg, seed, n_classes, texts, targets, weights, predict, loss,
                          epochs, early_stopping))


class FinetuneStudent:
    """A strong model fine-tuned from scratch by each `fit` (one run of the installed Trainer)."""

    def __init__(self, texts_train: list[str], texts_test: list[str], n_classes: int,
                 cfg: FinetuneConfig, seed: int) -> None:
        self.texts = {"train": texts_train, "test": texts_test}
        self.n_classes, self.cfg, self.seed = n_classes, cfg, seed
        self.probs: dict[str, np.ndarray] = {}
        self.metrics: dict[str, Any] = {}
        self.checkpoint_path: str | None = None  # the trained model and predictions
        self.epochs_run = self.best_epoch = 0

    def fit(self, targets: np.ndarray, weights: np.ndarray | None = None,
            loss: LossFn | None = None, *, epochs: int | None = None,
            early_stopping: EarlyStopping | None = None) -> None:
        result = fine_tune(self.cfg, self.seed, self.n_classes, self.texts["train"], targets,
                           self.texts, weights, loss, epochs=epochs,
                           early_stopping=early_stopping)
        self.probs, self.metrics = result.probs, result.metrics
        self.checkpoint_path = result.checkpoint_path
        self.epochs_run, self.best_epoch = self.metrics["epochs_run"], self.metrics["best_epoch"]

    def predict(self, split: str) -> np.ndarray:
        if not self.probs:
            raise RuntimeError("predict() before fit()")
        return self.probs[split]


class FinetuneStudents:
    """Fresh fine-tuning students on one seed's texts (the `StudentFactory` of finetune mode).

    Training knobs come from `FinetuneConfig` (its `batch_size` is per worker); the
    `StudentConfig` is kept for the interface only."""

    mode = "finetune"

    def __init__(self, inputs: StudentInputs, cfg: FinetuneConfig,
                 student: StudentConfig | None = None) -> None:
        if inputs.texts_train is None or inputs.texts_test is None:
            raise ValueError("finetune mode needs texts_train and texts_test in StudentInputs")
        cfg.validate("finetune")
        self.inputs, self.cfg, self.student = inputs, cfg, student
        self.n_train, self.n_classes = len(inputs.texts_train), inputs.n_classes
        self.epochs = cfg.epochs

    def new(self, seed_offset: int = 0) -> FinetuneStudent:
        return FinetuneStudent(self.inputs.texts_train, self.inputs.texts_test, self.n_classes,
                               self.cfg, self.inputs.seed * 1000 + seed_offset)

    def features(self, split: str) -> np.ndarray:
        raise ConfigError("features() exist in head mode only: finetune mode trains the whole "
                          "model on texts; a method that needs frozen features must declare "
                          "modes = (\"head\",)")
