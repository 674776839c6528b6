"""Features of texts under a model, computed once per (model, text) and cached on disk.

The cache is a folder of Parquet shards per model, keyed by the SHA-1 of each text, so a new
subset or task only embeds the texts not seen before. Shards are written to a temp name and
renamed, so concurrent writers never leave a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aar_ray.w2s.models import MODELS
from aar_ray.w2s.tasks import split_pair


def default_cache_dir() -> Path:
    return Path(os.environ.get("AAR_CACHE") or Path.home() / ".cache" / "aar-ray")


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


CHUNK = 512  # texts embedded at a time, so that progress can be shown
_progress: Callable[[str, int, int], None] | None = None


def report_progress(fn: Callable[[str, int, int], None] | None) -> None:
    """Have `fn(model, done, total)` called as texts are embedded (the scorer passes it on to
    the campaign's driver, which shows a progress bar)."""
    global _progress
    _progress = fn


class FeatureCache:
    def __init__(self, root: Path, model: str) -> None:
        self.dir = Path(root) / "features" / model
        self.model = model
        self._loaded: dict[str, np.ndarray] = {}
        self._shards: set[str] = set()

    def _refresh(self) -> None:
        if not self.dir.exists():
            return
        for shard in sorted(self.dir.glob("*.parquet")):
            if shard.name not in self._shards:
                table = pq.ParquetFile(shard).read()  # read_table imports pyarrow.dataset
                keys = table.column("key").to_pylist()
                vecs = np.stack(table.column("vec").to_numpy(zero_copy_only=False))
                self._loaded.update(zip(keys, vecs.astype(np.float32), strict=True))
                self._shards.add(shard.name)

    def get(self, texts: list[str], embed) -> tuple[np.ndarray, int]:
        """Features for `texts` and how many had to be computed now."""
        self._refresh()
        keys = [text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True)
                          if k not in self._loaded}.items())
        if missing:
            parts = []
            for i in range(0, len(missing), CHUNK):
                parts.append(np.asarray(embed([t for _, t in missing[i:i + CHUNK]]),
                                        dtype=np.float32))
                if _progress is not None:
                    _progress(self.model, i + len(parts[-1]), len(missing))
            vecs = np.concatenate(parts)
            self._write([k for k, _ in missing], vecs)  # one shard: each costs a read later
            self._loaded.update(zip((k for k, _ in missing), vecs, strict=True))
        return np.stack([self._loaded[k] for k in keys]), len(missing)

    def _write(self, keys: list[str], vecs: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.table({"key": keys, "vec": pa.array(list(vecs),
                                                       type=pa.list_(pa.float32()))})
        name = f"{uuid.uuid4().hex}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / name)
        self._shards.add(name)


_CACHES: dict[tuple[str, str], FeatureCache] = {}


def embed(model: str, texts: list[str], cache_dir: Path | None = None,
          pairwise: bool = False) -> Any:
    """(n, d) features of `texts` under `model`; texts of a pairwise task (`TaskSpec.pairwise`)
    give f(A) - f(B)."""
    if pairwise:
        sides = [split_pair(t) for t in texts]
        return (embed(model, [a for a, _ in sides], cache_dir)
                - embed(model, [b for _, b in sides], cache_dir))
    spec = MODELS.get(model)
    if spec.embed is None:
        raise ValueError(f"model {model!r} has no feature extractor; use student mode finetune")
    if not spec.cacheable:
        return spec.embed(texts)
    root = Path(cache_dir or default_cache_dir())
    cache = _CACHES.setdefault((str(root), model), FeatureCache(root, model))
    return cache.get(texts, spec.embed)[0]


def embed_counting(model: str, texts: list[str], cache_dir: Path) -> int:
    """How many of `texts` had to be embedded now (for tests and benchmarks)."""
    spec = MODELS.get(model)
    return FeatureCache(Path(cache_dir), model).get(texts, spec.embed)[1]
