"""SigLIP's text tower as a numpy forward pass, for text queries searched among keyframes:
a command-line search of a library with visual vectors then imports no torch or
transformers (seconds on a small shared machine). The same safetensors, memory-mapped (a
query touches only its own rows of the 256k-token table), tokenized by `tokenizers` from the
checkpoint's tokenizer.json the way model.visual.ClipBackend tokenizes (lowercased, padded
to the full length, no mask, pooled at the last position, then the head), so the vectors
equal transformers' float32 CPU ones within float32 rounding (tests/test_visual_query.py).

Supported: a SigLIP checkpoint (config model_type "siglip", which the fixed-resolution
SigLIP 2 models are) with its weights in one model.safetensors (float32 or float16), a
tokenizer.json and a pad token; anything else uses the full model (`supports`)."""

import json
import struct
from pathlib import Path

import numpy as np

from model.minilm_numpy import DTYPES, WEIGHTS, Layers, _json, read_safetensors

PREFIX = "text_model."
# SiglipTextConfig's defaults: a saved config.json lists only what differs from them.
DEFAULTS = {"num_attention_heads": 12, "layer_norm_eps": 1e-6,
            "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 64}


def _text_config(path: Path) -> dict:
    config = _json(path / "config.json")
    return {**DEFAULTS, **(config.get("text_config") or {})} if isinstance(config, dict) else {}


def _pad_token(path: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        pad = _json(path / name).get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        if isinstance(pad, str):
            return pad
    return None


def _text_dtypes(path: Path) -> set[str]:
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return {v["dtype"] for k, v in header.items() if k.startswith(PREFIX)}


def supports(path: Path) -> bool:
    path = Path(path)
    config = _json(path / "config.json")
    if not isinstance(config, dict) or config.get("model_type") != "siglip":
        return False
    weights = path / WEIGHTS
    return (_text_config(path)["hidden_act"] == "gelu_pytorch_tanh" and weights.is_file()
            and (path / "tokenizer.json").is_file() and _pad_token(path) is not None
            and _text_dtypes(weights) <= set(DTYPES))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (x + 0.044715 * x ** 3)))


class SiglipTextNumpy(Layers):
    """`texts` of model.visual's Backend, and SigLIP's trained (scale, bias)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        path = Path(path)
        text = _text_config(path)
        self.heads = int(text["num_attention_heads"])
        self.eps = float(text["layer_norm_eps"])
        tensors = read_safetensors(path / WEIGHTS)
        self.w = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        self.layers = sum(k.endswith(".layer_norm1.weight") for k in self.w)
        self.dim = int(self.w["head.weight"].shape[0])
        self.calibration = None
        if "logit_bias" in tensors:
            self.calibration = (float(np.exp(np.asarray(tensors["logit_scale"], np.float32))
                                      .reshape(-1)[0]),
                                float(np.asarray(tensors["logit_bias"]).reshape(-1)[0]))
        length = int(text["max_position_embeddings"])
        pad = _pad_token(path)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(length)
        self.tokenizer.enable_padding(length=length, pad_id=self.tokenizer.token_to_id(pad),
                                      pad_token=pad)

    def _attention(self, x: np.ndarray, name: str) -> np.ndarray:
        n, t, d = x.shape
        q, k, v = (self._split(x, f"{name}.{part}_proj") for part in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) * np.float32((d // self.heads) ** -0.5)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (scores / scores.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3)
        return self._dense(ctx.reshape(n, t, d), f"{name}.out_proj")

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        x = (self.w["embeddings.token_embedding.weight"][ids].astype(np.float32)
             + self._p("embeddings.position_embedding.weight")[np.arange(ids.shape[1])])
        for i in range(self.layers):
            name = f"encoder.layers.{i}"
            x = x + self._attention(self._norm(x, f"{name}.layer_norm1"), f"{name}.self_attn")
            h = gelu_tanh(self._dense(self._norm(x, f"{name}.layer_norm2"), f"{name}.mlp.fc1"))
            x = x + self._dense(h, f"{name}.mlp.fc2")
        return self._dense(self._norm(x, "final_layer_norm")[:, -1], "head")

    def texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32, not normalised (model.visual does that)."""
        from threadpoolctl import threadpool_limits
        out = []
        with threadpool_limits(1, user_api="blas"):    # see model.minilm_numpy.encode
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer.encode_batch([t.lower() for t in texts[i:i + batch_size]])
                out.append(self._forward(np.array([e.ids for e in enc], np.int64)))
        return np.concatenate(out).astype(np.float32)
