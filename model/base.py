"""What every model wrapper shares: a lazy, locked load once per process and key, the device
it runs on, and its provenance id (name@revision or name@fingerprint of its files).

A wrapper is a subclass of InferenceModel that says what its load depends on (`key`) and
how to load (`load`, which also sets `model_id`); its module exposes one public call that
fetches the loaded instance with `get(settings)`. Backends of one wrapper sit behind a
Protocol of their own (see model.embed)."""

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, Self

from core.config import Settings, get_settings

SAMPLE = 1 << 20      # bytes hashed at each sampled place of a weights file
WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".onnx", ".gguf", ".model")


class InferenceModel:
    """One loaded model. `get` builds it on first use, under the subclass's own lock (so two
    threads never load it twice and one model's load never waits for another's)."""
    model_id: str = ""          # name and revision or file hash: stored with every segment
    per_process: ClassVar[bool] = False   # True: a forked child loads its own (CUDA state)
    _lock: ClassVar[threading.Lock]
    _loaded: ClassVar[dict[tuple, "InferenceModel"]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._lock, cls._loaded = threading.Lock(), {}

    def __init__(self) -> None:
        self.pid = os.getpid()

    @staticmethod
    def key(settings: Settings) -> tuple:
        """The settings that change what is loaded."""
        raise NotImplementedError

    def load(self, settings: Settings) -> None:
        """Load the weights and set model_id; raise ModelUnavailable saying how to fix it."""
        raise NotImplementedError

    @classmethod
    def get(cls, settings: Settings | None = None) -> Self:
        settings = settings or get_settings()
        key = cls.key(settings)
        found = cls._loaded.get(key)
        if found is not None and found._usable():
            return found
        with cls._lock:
            found = cls._loaded.get(key)
            if found is None or not found._usable():
                found = cls()
                found.load(settings)
                cls._loaded[key] = found
            return found

    @classmethod
    def unload(cls) -> None:
        with cls._lock:
            cls._loaded.clear()

    def _usable(self) -> bool:
        # A copy inherited through fork() holds the parent's CUDA context, unusable here.
        return not self.per_process or self.pid == os.getpid()


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype(on: str):
    """bfloat16 on a GPU (what the checkpoints ship), float32 on a CPU (bf16 is slow there)."""
    import torch
    return torch.bfloat16 if on == "cuda" else torch.float32


def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16), where
    oneDNN runs a bf16 matmul about twice as fast as float32; elsewhere bf16 is emulated."""
    import torch
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


# ---- provenance --------------------------------------------------------------------------

def head_tail(size: int) -> list[int]:
    return [0, size - SAMPLE] if size > 2 * SAMPLE else [0]


def head_middle_tail(size: int) -> list[int]:
    return sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)})


def head(size: int) -> list[int]:
    return [0]


def fingerprint(files: Iterable[tuple[str, Path]], *,
                sample: Callable[[int], list[int]] = head_tail) -> str:
    """Twelve hex digits that change when the files do: a config (.json) by its name and
    bytes, a weights file by its name, size and the SAMPLE bytes at each of `sample(size)`.
    Hashing whole weights (GBs) at every start would take minutes; samples change whenever
    the weights do, and unlike mtimes they survive copying."""
    h = hashlib.sha256()
    for label, path in files:
        if path.suffix == ".json":
            h.update(label.encode())
            h.update(path.read_bytes())
            continue
        size = path.stat().st_size
        h.update(f"{label}:{size}".encode())
        with open(path, "rb") as f:
            for offset in sample(size):
                f.seek(offset)
                h.update(f.read(SAMPLE))
    return h.hexdigest()[:12]


def checkpoint_files(directory: Path) -> list[tuple[str, Path]]:
    """The files that identify a model directory: weights, and configs under SAMPLE bytes,
    at any depth, hidden ones left out; labelled by their path inside the directory."""
    directory = Path(directory)
    out = []
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = f.relative_to(directory).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if f.suffix in WEIGHT_SUFFIXES or f.suffix == ".json" and f.stat().st_size < SAMPLE:
            out.append((rel, f))
    return out


def model_id(name: str, directory: Path) -> str:
    """Provenance for what a model directory produced: "name@fingerprint"."""
    return f"{name}@{fingerprint(checkpoint_files(directory))}"
