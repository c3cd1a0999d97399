"""What is seen: image-text embeddings of keyframes, short clips and query texts, in one
vector space per model (L2-normalised float32 rows).

Backends sit behind a Protocol and are chosen from the checkpoint's config (or
settings.visual.backend):
- CLIP family through transformers (SigLIP 2, SigLIP, CLIP: AutoModel + AutoProcessor,
  get_image_features / get_text_features), the CPU default: SigLIP 2 base patch16 224;
  a clip is the mean of its frames' embeddings;
- Qwen3-VL-Embedding (2B: 2048-d, 8B: 4096-d) on GPU workers: the Qwen3-VL backbone, the
  instruction as system turn, the image / frames / text as user turn, the final hidden
  state of the closing <|endoftext|> pooled. A clip's frames carry their absolute times
  (`<t seconds>` labels), passed as model.qwen.video passes them for captions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from core.config import Settings, get_settings
from core.errors import ModelUnavailable
from core.types import Frame
from model import base, siglip_numpy
from model.resolve import Source, looks_like_path, resolve

SOURCE = Source(
    what="visual embedding", setting="CHRONOSCOPE_VISUAL__MODEL",
    default="siglip2-base-patch16-224", required=("config.json",),
    names={"siglip2-base-patch16-224": "google/siglip2-base-patch16-224",
           "siglip2-base-patch16-256": "google/siglip2-base-patch16-256",
           "Qwen3-VL-Embedding-2B": "Qwen/Qwen3-VL-Embedding-2B",
           "Qwen3-VL-Embedding-8B": "Qwen/Qwen3-VL-Embedding-8B"},
    allow_patterns=("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"))
QWEN_TYPES = ("qwen3_vl", "qwen3_vl_moe")
# Qwen3-VL-Embedding's generic instruction for what is indexed, a task one for queries.
VL_DOCUMENT = "Represent the user's input."
VL_QUERY = "Retrieve images or video clips that show what the user's query describes."
ENDOFTEXT = "<|endoftext|>"

Image = np.ndarray | Frame      # H x W x 3 uint8 RGB, or a decoded frame
Clip = Sequence[Frame]          # several frames with their absolute t_ms


class Backend(Protocol):
    dim: int

    def images(self, images: list[np.ndarray], batch_size: int) -> np.ndarray:
        """(len(images), dim) float32."""

    def texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32, embedded as queries."""

    def clips(self, clips: list[list[Frame]], batch_size: int) -> np.ndarray:
        """(len(clips), dim) float32."""


def _features(out):
    # transformers 5 returns a model output whose pooler_output is the projected vector.
    return out if hasattr(out, "shape") else out.pooler_output


def _unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class ClipBackend:
    """An image-text dual encoder: images and texts land in one space."""

    def __init__(self, path: Path, cpu_dtype: str = "float32"):
        import torch
        from transformers import AutoModel, AutoProcessor
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        self.device = base.device()
        self.model = AutoModel.from_pretrained(
            str(path), dtype=base.dtype(self.device), local_files_only=True).to(self.device).eval()
        # The PIL image processor: the same pixels as the torchvision one (within one grey
        # level) at a twentieth of its CPU time per image (bench/visual_throughput.py).
        self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True,
                                                       use_fast=False)
        config = self.model.config
        # SigLIP was trained on lowercased text padded to its full length, without a mask,
        # pooled at the last position: queries must be tokenized the same way.
        self.siglip = config.model_type in ("siglip", "siglip2")
        self.text_length = int(getattr(config.text_config, "max_position_embeddings", 77))
        # SigLIP's training loss is a sigmoid of scale * cos + bias per image-text pair:
        # its output is the model's own probability that the two match. Read before a
        # bfloat16 cast, which would round the scale by up to 3 %.
        self.calibration = None
        if self.siglip and hasattr(self.model, "logit_bias"):
            self.calibration = (float(self.model.logit_scale.detach().exp()),
                                float(self.model.logit_bias.detach().reshape(-1)[0]))
        if self.device == "cpu" and (cpu_dtype == "bfloat16" or
                                     (cpu_dtype == "auto" and base.cpu_bf16_native())):
            # Twice the float32 speed where the CPU has bf16 units; embeddings stay within
            # cosine 0.9999 of float32 ones (bench/visual_throughput.py). The image side
            # only: a text query is one short sequence, and in float32 it equals the numpy
            # text tower a search runs (model.siglip_numpy).
            for part in ("vision_model", "visual_projection"):
                if hasattr(self.model, part):
                    getattr(self.model, part).to(torch.bfloat16)
        self.dim = int(self.texts(["a"], 1).shape[1])

    def images(self, images: list[np.ndarray], batch_size: int) -> np.ndarray:
        import torch
        out = []
        for i in range(0, len(images), batch_size):
            inputs = self.processor(images=images[i:i + batch_size], return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                out.append(_features(self.model.get_image_features(**inputs)).float().cpu())
        return torch.cat(out).numpy()

    def texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch
        out = []
        for i in range(0, len(texts), batch_size):
            batch = texts[i:i + batch_size]
            if self.siglip:
                batch = [t.lower() for t in batch]
            tokens = self.processor.tokenizer(
                batch, padding="max_length" if self.siglip else True, truncation=True,
                max_length=self.text_length, return_tensors="pt")
            keys = ("input_ids",) if self.siglip else ("input_ids", "attention_mask")
            inputs = {k: tokens[k].to(self.device) for k in keys}
            with torch.inference_mode():
                out.append(_features(self.model.get_text_features(**inputs)).float().cpu())
        return torch.cat(out).numpy()

    def clips(self, clips: list[list[Frame]], batch_size: int) -> np.ndarray:
        # A dual encoder sees single images: a clip is the mean direction of its frames.
        flat = [f.image for clip in clips for f in clip]
        vectors = _unit(self.images(flat, batch_size))
        bounds = np.cumsum([0] + [len(c) for c in clips])
        return np.stack([vectors[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])


class QwenBackend:
    calibration = None
    """Qwen3-VL-Embedding as its model card runs it: a chat (instruction as system turn,
    the input as user turn, generation prompt added) closed by <|endoftext|>, whose
    last-layer hidden state is the embedding."""

    def __init__(self, path: Path, frame_side: int):
        from transformers import AutoModel, AutoProcessor
        self.device = base.device()
        self.model = AutoModel.from_pretrained(
            str(path), dtype=base.dtype(self.device), local_files_only=True).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        config = self.model.config
        self.dim = int(getattr(config, "text_config", config).hidden_size)
        self.side = frame_side
        tokenizer = self.processor.tokenizer
        self.eos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
        # The released tokenizer appends <|endoftext|> itself; one built without that
        # post-processor does not, and the pooled token must be it either way.
        self.close = "" if tokenizer("x")["input_ids"][-1:] == [self.eos] else ENDOFTEXT

    def _text(self, instruction: str, content: list[dict]) -> str:
        from model.qwen.prompt import render
        messages = [{"role": "system", "content": [{"type": "text", "text": instruction}]},
                    {"role": "user", "content": content}]
        return render(self.processor, messages) + self.close

    def _run(self, texts: list[str], **visual) -> np.ndarray:
        import torch
        from model.embed import last_token_pool
        inputs = self.processor(text=texts, padding=True, return_tensors="pt", **visual)
        inputs.pop("video_metadata", None)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state
            pooled = last_token_pool(hidden, inputs["attention_mask"])
        return pooled.float().cpu().numpy()

    def images(self, images: list[np.ndarray], batch_size: int) -> np.ndarray:
        from model.qwen.video import prepare_video
        out = []
        text = self._text(VL_DOCUMENT, [{"type": "image"}])
        for i in range(0, len(images), batch_size):
            # The same resize as video frames: a known token cost per image.
            pixels = [prepare_video([Frame(0, 0, im)], self.side).pixels[0]
                      for im in images[i:i + batch_size]]
            out.append(self._run([text] * len(pixels), images=pixels, do_resize=False))
        return np.concatenate(out)

    def texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            rows = [self._text(VL_QUERY, [{"type": "text", "text": t or "NULL"}])
                    for t in texts[i:i + batch_size]]
            out.append(self._run(rows))
        return np.concatenate(out)

    def clips(self, clips: list[list[Frame]], batch_size: int) -> np.ndarray:
        from model.qwen.video import PROCESSOR_VIDEO_KWARGS, prepare_video
        text = self._text(VL_DOCUMENT, [{"type": "video"}])
        out = []
        # batch_size counts frames: a batch holds as many clips as that many frames make.
        batch_size = max(1, batch_size // max(len(c) for c in clips))
        for i in range(0, len(clips), batch_size):
            videos = [prepare_video(list(c), self.side) for c in clips[i:i + batch_size]]
            out.append(self._run([text] * len(videos), videos=[v.pixels for v in videos],
                                 video_metadata=[v.metadata for v in videos],
                                 **PROCESSOR_VIDEO_KWARGS))
        return np.concatenate(out)


def _model_type(path: Path) -> str:
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        return ""


class VisualEmbedder(base.InferenceModel):
    per_process = True     # a forked worker loads its own (CUDA state, torch threads)
    backend: Backend
    dim: int

    @staticmethod
    def key(settings: Settings) -> tuple:
        v = settings.visual
        return (v.enabled, v.model.strip(), v.revision, v.backend, v.frame_side, v.cpu_dtype,
                str(settings.model_cache))

    def load(self, settings: Settings) -> None:
        path, kind, self.model_id = _resolved(settings)
        self.backend = (QwenBackend(path, settings.visual.frame_side) if kind == "qwen"
                        else ClipBackend(path, settings.visual.cpu_dtype))
        self.dim = self.backend.dim


class TextQuery(base.InferenceModel):
    """The text tower for queries: SigLIP's in numpy (model.siglip_numpy) where the
    checkpoint allows, so a text search among keyframes loads no torch; else the full
    model's."""
    backend: Backend | siglip_numpy.SiglipTextNumpy

    key = staticmethod(VisualEmbedder.key)

    def load(self, settings: Settings) -> None:
        path, kind, self.model_id = _resolved(settings)
        if kind == "clip" and siglip_numpy.supports(path):
            self.backend = siglip_numpy.SiglipTextNumpy(path)
        else:
            self.backend = VisualEmbedder.get(settings).backend


def _resolved(settings: Settings) -> tuple[Path, str, str]:
    """(the checkpoint directory, 'qwen' or 'clip', the model id of its vectors)."""
    v = settings.visual
    if not v.enabled:
        raise ModelUnavailable("visual search is turned off: set "
                               "CHRONOSCOPE_VISUAL__ENABLED=true to embed keyframes")
    try:
        path = resolve(v.model, SOURCE, cache_dir=settings.model_cache, revision=v.revision)
    except ModelUnavailable as e:
        raise ModelUnavailable(f"no image-text model for visual search: {e}") from None
    kind = v.backend
    if kind == "auto":
        kind = "qwen" if _model_type(path) in QWEN_TYPES else "clip"
    name = v.model.strip() or SOURCE.default
    return path, kind, base.model_id(Path(name).name if looks_like_path(name) else name, path)


def _settings(settings: Settings | None) -> Settings:
    return settings or get_settings()


def model_id(settings: Settings | None = None) -> str:
    """Provenance of the vectors: stored with every visual embedding."""
    return VisualEmbedder.get(_settings(settings)).model_id


def query_model_id(settings: Settings | None = None) -> str:
    """The same id as model_id, without loading the image tower where numpy runs the text
    one."""
    return TextQuery.get(_settings(settings)).model_id


def dim(settings: Settings | None = None) -> int:
    return VisualEmbedder.get(_settings(settings)).dim


# Score maps, P(match) = sigmoid(scale * cos + bias), for what has no trained one:
# a text query against a contrastive (softmax-trained) model's keyframes: 0.5 at cos 0.25,
# where CLIP-family text-image cosines of a true match start; and an image query against
# keyframes (image-image cosine of the same model): 0.5 at cos 0.85, near-duplicates only.
DEFAULT_TEXT = (40.0, -10.0)
IMAGE = (20.0, -17.0)


def text_calibration(settings: Settings | None = None) -> tuple[float, float]:
    """(scale, bias) that turn a text-keyframe cosine into the probability of a match:
    SigLIP's own trained logit scale and bias, or DEFAULT_TEXT for other models."""
    return TextQuery.get(_settings(settings)).backend.calibration or DEFAULT_TEXT


def embed_images(images: Sequence[Image], settings: Settings | None = None) -> np.ndarray:
    """(len(images), dim) float32 unit rows: keyframes, or an image a user searches with."""
    settings = _settings(settings)
    model = VisualEmbedder.get(settings)
    if not images:
        return np.zeros((0, model.dim), np.float32)
    arrays = [im.image if isinstance(im, Frame) else np.asarray(im, np.uint8) for im in images]
    return _unit(model.backend.images(arrays, settings.visual.batch_size))


def embed_texts(texts: Sequence[str], settings: Settings | None = None) -> np.ndarray:
    """(len(texts), dim) float32 unit rows: queries, in the same space as the images."""
    settings = _settings(settings)
    backend = TextQuery.get(settings).backend
    if not texts:
        return np.zeros((0, backend.dim), np.float32)
    return _unit(backend.texts(list(texts), settings.visual.batch_size))


def embed_clips(clips: Sequence[Clip], settings: Settings | None = None) -> np.ndarray:
    """(len(clips), dim) float32 unit rows; a clip is frames with absolute times, sorted
    here. Qwen3-VL-Embedding sees them as a video labelled with those times."""
    settings = _settings(settings)
    model = VisualEmbedder.get(settings)
    if not clips:
        return np.zeros((0, model.dim), np.float32)
    if any(not c for c in clips):
        raise ValueError("a clip needs at least one frame")
    ordered = [sorted(c, key=lambda f: f.t_ms) for c in clips]
    return _unit(model.backend.clips(ordered, settings.visual.batch_size))
