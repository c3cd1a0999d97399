"""Load Qwen3-VL once per worker process: lazy, locked, cached per (model, revision).

Every released checkpoint goes through the same path: dense (2B, 4B, 8B, 32B) loads as
`Qwen3VLForConditionalGeneration`, MoE (30B-A3B, 235B-A22B) as
`Qwen3VLMoeForConditionalGeneration`, picked from the checkpoint's `model_type`; Instruct
and Thinking differ only in their chat template, which the processor carries.

Resolution follows the DESIGN order: a configured directory, then the local Hugging Face
cache, then a download; when none works the error says how to provide the weights.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelUnavailable
from model.base import InferenceModel, device, dtype, fingerprint, head_middle_tail

log = logging.getLogger(__name__)

MODEL_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]


class QwenVL(InferenceModel):
    """The model and its processor. Per process: a copy inherited through fork() belongs to
    the parent (its CUDA context cannot be used in the child), so a worker loads its own."""
    per_process = True
    model: Any
    processor: Any
    path: Path

    @staticmethod
    def key(settings) -> tuple:
        return settings.qwen.model.strip(), settings.qwen.revision

    def load(self, settings) -> None:
        self.path, self.model_id = resolve(settings)
        self.model, self.processor = _load(self.path, self.model_id, settings)


def load(settings) -> tuple[Any, Any]:
    """(model, processor) for settings.qwen.model, loaded on first use in this process."""
    rec = loaded(settings)
    return rec.model, rec.processor


def model_id(settings) -> str:
    return loaded(settings).model_id


def loaded(settings) -> QwenVL:
    return QwenVL.get(settings)


def unload() -> None:
    """Drop every loaded model (tests, or a worker switching models)."""
    QwenVL.unload()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve(settings) -> tuple[Path, str]:
    """(checkpoint directory, model id) without loading anything."""
    name = settings.qwen.model.strip()
    revision = settings.qwen.revision
    if not name:
        raise ModelUnavailable(
            "No Qwen3-VL model is configured, so there are no visual captions. Set "
            "CHRONOSCOPE_QWEN__MODEL to a hub id such as Qwen/Qwen3-VL-2B-Instruct or to a "
            "directory holding a downloaded checkpoint.")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"{path} has no config.json: point CHRONOSCOPE_QWEN__MODEL at the directory of "
                "a Qwen3-VL checkpoint (config.json, *.safetensors, tokenizer and processor files).")
        files = checkpoint_files(path)
        return path, f"{path.resolve().name}@{fingerprint(files, sample=head_middle_tail)}"
    if not _HUB_ID.match(name):
        raise ModelUnavailable(
            f"Qwen3-VL directory {path} does not exist. Download a checkpoint there (for example "
            f"`hf download Qwen/Qwen3-VL-2B-Instruct --local-dir {path}`) or set "
            "CHRONOSCOPE_QWEN__MODEL to a hub id.")
    from huggingface_hub import snapshot_download

    kwargs = dict(repo_id=name, revision=revision, allow_patterns=_FILES,
                  cache_dir=str(settings.model_cache) if settings.model_cache else None)
    try:
        snapshot = snapshot_download(local_files_only=True, **kwargs)
    except Exception:
        try:
            snapshot = snapshot_download(**kwargs)
        except Exception as exc:
            where = settings.model_cache or "the Hugging Face cache"
            raise ModelUnavailable(
                f"Qwen3-VL weights {name}{'@' + revision if revision else ''} are not in {where} "
                f"and could not be downloaded ({type(exc).__name__}: {exc}). On a machine with "
                f"internet run `hf download {name} --local-dir DIR`, copy DIR here and set "
                "CHRONOSCOPE_QWEN__MODEL=DIR (or pre-fill CHRONOSCOPE_MODEL_CACHE).") from exc
    snapshot = Path(snapshot)
    return snapshot, f"{name}@{snapshot.name}"  # snapshots/<commit>


def checkpoint_files(path: Path) -> list[tuple[str, Path]]:
    """Its configs, then its weights (sampled at head, middle and tail): the ids already
    stored for local checkpoints were computed this way, and another way would re-caption
    every video."""
    weights = sorted([*path.glob("*.safetensors"), *path.glob("*.bin")])
    return [(f.name, f) for f in [*sorted(path.glob("*.json")), *weights]]


def attn_implementation(requested: str, cuda: bool) -> str:
    """The configured kernel when it can run here; flash-attention only with its package
    and a GPU, otherwise PyTorch SDPA (same results, different kernel)."""
    wanted = (requested or "sdpa").strip()
    needs = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}
    if wanted in needs and (not cuda or importlib.util.find_spec(needs[wanted]) is None):
        log.warning("%s needs a GPU and the %s package; using sdpa", wanted, needs[wanted])
        return "sdpa"
    return wanted


def _load(path: Path, mid: str, settings) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoConfig, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ModelUnavailable(f"{path}: unreadable config.json ({exc})") from exc
    cls_name = MODEL_CLASSES.get(config.model_type)
    if cls_name is None:
        raise ModelUnavailable(
            f"{path} holds a {config.model_type!r} model, not Qwen3-VL; set CHRONOSCOPE_QWEN__MODEL "
            "to a Qwen3-VL checkpoint (dense or MoE, Instruct or Thinking).")
    on = device()
    kwargs: dict[str, Any] = {
        "dtype": dtype(on),
        "attn_implementation": attn_implementation(settings.qwen.attn_implementation, on == "cuda"),
    }
    # Checkpoints larger than one GPU (32B, 235B-A22B) are split across GPUs by accelerate.
    sharded = on == "cuda" and torch.cuda.device_count() > 1 and importlib.util.find_spec("accelerate")
    if sharded:
        kwargs["device_map"] = "auto"
    try:
        model = getattr(transformers, cls_name).from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path)
    except Exception as exc:
        raise ModelUnavailable(f"could not load Qwen3-VL from {path}: {type(exc).__name__}: {exc}") from exc
    if on == "cuda" and not sharded:
        model.to("cuda")
    model.eval()
    log.info("loaded %s (%s) as %s, %s, %s", mid, path, cls_name, kwargs["dtype"], kwargs["attn_implementation"])
    return model, processor
