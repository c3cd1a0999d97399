"""A BERT sentence embedder (all-MiniLM-L6-v2 and its kin) as a numpy forward pass, for
queries: one short text needs no torch. Importing torch and sentence-transformers takes
15-40 s on a small shared machine; this takes numpy, `tokenizers` and a memory-mapped read
of the same safetensors, so the vectors come from the same weights (the model id stored
with segments is unchanged) and equal sentence-transformers' within float32 rounding
(tests/test_embed.py checks cosine >= 1 - 1e-5).

Supported: a sentence-transformers directory whose config is a BertModel (absolute
positions, GELU), float32 or float16 weights in model.safetensors, a tokenizer.json,
Pooling by mean or CLS token, and its query/document prompts; anything else goes to the
sentence-transformers backend (`supports`)."""

import json
import struct
from pathlib import Path

import numpy as np

WEIGHTS = "model.safetensors"
DTYPES = {"F32": np.float32, "F16": np.float16}
NEG = np.finfo(np.float32).min     # what transformers adds to the scores of padding


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _pooling(path: Path) -> tuple[str | None, bool]:
    """('mean' or 'cls', whether the prompt is pooled) from the sentence-transformers
    modules, in the configs of sentence-transformers 2-5 or 6; None if unsupported."""
    modules = _json(path / "modules.json")
    if not isinstance(modules, list):
        return None, True
    types = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if types[:2] != ["Transformer", "Pooling"] or set(types[2:]) - {"Normalize"}:
        return None, True
    pool = _json(path / modules[1].get("path", "") / "config.json")
    modes = {k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
             for k, v in pool.items() if k.startswith("pooling_mode_") and v is True}
    if isinstance(pool.get("pooling_mode"), str):
        modes = {pool["pooling_mode"]}
    mode = modes.pop() if len(modes) == 1 else None
    return (mode if mode in ("mean", "cls") else None), pool.get("include_prompt", True)


def prompts(path: Path) -> dict[str, str]:
    """The text sentence-transformers puts before a query or a document (e5: 'query: ')."""
    found = _json(path / "config_sentence_transformers.json").get("prompts") or {}
    return {k: v for k, v in found.items() if v}


def supports(path: Path) -> bool:
    path = Path(path)
    config = _json(path / "config.json")
    return (isinstance(config, dict) and config.get("model_type") == "bert"
            and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and (path / WEIGHTS).is_file() and (path / "tokenizer.json").is_file()
            and _pooling(path)[0] is not None
            # A prompt left out of the pooling would need its tokens masked: not done here.
            and (_pooling(path)[1] or not prompts(path)))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only view of one memory map: a query
    touches only the embedding rows of its own tokens, not the whole 47 MB table."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    data = np.memmap(path, np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in DTYPES:
            continue
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, float32 rounding is 6e-8): the exact
    GELU of BERT without scipy."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                       + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class Layers:
    """Dense and layer-norm steps over named weights `w` (float32 views), as the numpy
    encoders here share them."""
    w: dict[str, np.ndarray]
    eps: float
    heads: int

    def _p(self, name: str) -> np.ndarray:
        return np.asarray(self.w[name], np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._p(f"{name}.weight").T + self._p(f"{name}.bias")

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self._p(f"{name}.weight"), self._p(f"{name}.bias"), self.eps)

    def _split(self, x: np.ndarray, name: str) -> np.ndarray:
        """x projected by `name`, (n, t, d) -> (n, heads, t, d / heads)."""
        n, t, d = x.shape
        return self._dense(x, name).reshape(n, t, self.heads, d // self.heads) \
            .transpose(0, 2, 1, 3)


class MiniLMNumpy(Layers):
    """The Transformer + Pooling (+ Normalize) of a sentence-transformers BERT model."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        path = Path(path)
        self.config = _json(path / "config.json")
        self.pooling = _pooling(path)[0]
        self.prompts = prompts(path)
        self.dim = int(self.config["hidden_size"])
        self.heads = int(self.config["num_attention_heads"])
        self.eps = float(self.config.get("layer_norm_eps", 1e-12))
        tensors = read_safetensors(path / WEIGHTS)
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
        self.w = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        # sentence-transformers truncates to max_seq_length, else to the tokenizer's limit,
        # never beyond the position table; the file's own padding and truncation do not apply.
        limit = min(_json(path / "sentence_bert_config.json").get("max_seq_length") or 512,
                    int(_json(path / "tokenizer_config.json").get("model_max_length") or 512),
                    int(self.config.get("max_position_embeddings", 512)))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(limit)

    def _attention(self, x: np.ndarray, bias: np.ndarray, name: str) -> np.ndarray:
        n, t, d = x.shape
        q, k, v = (self._split(x, f"{name}.self.{part}") for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d // self.heads)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        return self._norm(self._dense(ctx, f"{name}.output.dense") + x,
                          f"{name}.output.LayerNorm")

    def _layer(self, x: np.ndarray, bias: np.ndarray, i: int) -> np.ndarray:
        name = f"encoder.layer.{i}"
        x = self._attention(x, bias, f"{name}.attention")
        h = self._dense(x, f"{name}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.float32(np.sqrt(2.0))))
        return self._norm(self._dense(h, f"{name}.output.dense") + x, f"{name}.output.LayerNorm")

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        positions = np.arange(ids.shape[1])
        x = (self.w["embeddings.word_embeddings.weight"][ids].astype(np.float32)
             + self._p("embeddings.position_embeddings.weight")[positions]
             + self._p("embeddings.token_type_embeddings.weight")[types])
        x = self._norm(x, "embeddings.LayerNorm")
        bias = np.where(mask[:, None, None, :] > 0, np.float32(0), NEG).astype(np.float32)
        for i in range(int(self.config["num_hidden_layers"])):
            x = self._layer(x, bias, i)
        if self.pooling == "cls":
            return x[:, 0]
        m = mask[:, :, None].astype(np.float32)
        return (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)

    def encode(self, texts: list[str], *, kind: str, batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32, not normalised (model.embed does that)."""
        from threadpoolctl import threadpool_limits
        # One BLAS thread: a query's matrices are small, and OpenBLAS's threads waiting on
        # busy cores made each 384x384 product 50x slower (40 ms instead of 0.7 ms).
        with threadpool_limits(1, user_api="blas"):
            return self._encode(texts, kind, batch_size)

    def _encode(self, texts: list[str], kind: str, batch_size: int) -> np.ndarray:
        prompt = self.prompts.get(kind, "")
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch([prompt + t for t in texts[i:i + batch_size]])
            width = max(len(e.ids) for e in enc)

            def pad(rows):
                return np.array([r + [0] * (width - len(r)) for r in rows], np.int64)
            out.append(self._forward(pad([e.ids for e in enc]), pad([e.type_ids for e in enc]),
                                     pad([e.attention_mask for e in enc])))
        return np.concatenate(out).astype(np.float32)
