"""Model resolution from offline packages whose weights are split in parts (NAME.part1,
NAME.part2... over several packages, as a package index's size cap makes them): joined once
into the model cache, atomically. Small packages written here stand in for the real ones;
the real Whisper base parts are checked in test_speech."""

import importlib
import multiprocessing
import os
import sys

import pytest

from core.errors import ModelUnavailable
from model import resolve as resolver
from model.resolve import Source, resolve

PART = 3_000_000      # bytes per part: bigger than one copy buffer (1 MiB)


def _source(*folders: str) -> Source:
    return Source(what="test", setting="CHRONOSCOPE_TEST__MODEL", default="tiny",
                  required=("model.bin", "config.json"), names={"tiny": "org/tiny"},
                  packages={"org/tiny": folders})


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Two installed packages: the first ships config.json and model.bin.part1, the second
    model.bin.part2. Returns the folder they are installed in and the whole model.bin."""
    site = tmp_path / "site"
    weights = os.urandom(2 * PART - 7)
    for name, files in {"cs_parts_a": {"config.json": b"{}", "model.bin.part1": weights[:PART]},
                        "cs_parts_b": {"model.bin.part2": weights[PART:]}}.items():
        (site / name / "data").mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
        for file, data in files.items():
            (site / name / "data" / file).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site, weights


SOURCE = _source("cs_parts_a/data", "cs_parts_b/data")


def _leftovers(directory) -> list[str]:
    return [p.name for p in directory.rglob(".*")]


def test_parts_are_joined_once_into_the_cache(packages, tmp_path):
    _, weights = packages
    path = resolve("", SOURCE, cache_dir=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / "packaged"
    assert (path / "model.bin").read_bytes() == weights
    assert (path / "config.json").read_bytes() == b"{}"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin"]
    # Already there whole: the next resolution writes nothing.
    before = (path / "model.bin").stat()
    assert resolve("tiny", SOURCE, cache_dir=tmp_path / "cache") == path
    after = (path / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # A file of the wrong size (not the sum of its parts) is written again.
    with open(path / "model.bin", "r+b") as f:
        f.truncate(PART)
    assert (resolve("", SOURCE, cache_dir=tmp_path / "cache") / "model.bin").read_bytes() == weights
    assert _leftovers(tmp_path / "cache") == []


def test_other_parts_get_their_own_folder(packages, tmp_path):
    site, _ = packages
    first = resolve("", SOURCE, cache_dir=tmp_path)
    (site / "cs_parts_b" / "data" / "model.bin.part2").write_bytes(b"another version")
    second = resolve("", SOURCE, cache_dir=tmp_path)
    assert second != first and (second / "model.bin").stat().st_size == PART + 15


def test_a_file_appears_whole_or_not_at_all(packages, tmp_path, monkeypatch):
    """Mid-copy nothing is at model.bin's name; a copy that fails leaves nothing behind."""
    target = tmp_path / "cache" / "packaged"
    copy, seen = resolver.shutil.copyfileobj, []

    def watched(src, dst, length=0):
        copy(src, dst, length)
        if src.name.endswith(".part1"):
            seen.append([p.name for p in next(target.iterdir()).iterdir()])

    monkeypatch.setattr(resolver.shutil, "copyfileobj", watched)
    path = resolve("", SOURCE, cache_dir=tmp_path / "cache")
    assert len(seen) == 1 and "model.bin" not in seen[0]
    assert any(n.startswith(".model.bin.") for n in seen[0])   # the temporary file
    assert (path / "model.bin").stat().st_size == 2 * PART - 7

    def failing(src, dst, length=0):
        copy(src, dst, length)
        raise OSError(28, "No space left on device")

    (path / "model.bin").unlink()
    monkeypatch.setattr(resolver.shutil, "copyfileobj", failing)
    with pytest.raises(OSError, match="No space"):
        resolve("", SOURCE, cache_dir=tmp_path / "cache")
    assert not (path / "model.bin").exists() and _leftovers(path) == []


def _resolve_in_child(site: str, cache: str, queue) -> None:
    sys.path.insert(0, site)
    path = resolve("", SOURCE, cache_dir=cache)
    queue.put((str(path), (path / "model.bin").stat().st_size))


def test_processes_assembling_at_once_never_see_half_a_file(packages, tmp_path):
    """Four processes resolve at the same moment while this one watches the file's name:
    whenever it is there, it is whole."""
    site, weights = packages
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_resolve_in_child, args=(str(site), str(cache), queue))
                for _ in range(4)]
    for child in children:
        child.start()
    sizes = set()
    while any(child.is_alive() for child in children):
        for f in cache.rglob("model.bin"):
            try:
                sizes.add(f.stat().st_size)
            except FileNotFoundError:     # replaced between listing and stat
                pass
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join()
        assert child.exitcode == 0
    assert sizes <= {len(weights)}
    assert len({p for p, _ in results}) == 1 and {s for _, s in results} == {len(weights)}
    assert _leftovers(cache) == []


def test_a_missing_part_says_which_package_to_install(packages, tmp_path):
    missing = _source("cs_parts_a/data", "cs_parts_c/data")
    with pytest.raises(ModelUnavailable) as e:
        resolve("", missing, cache_dir=tmp_path)
    message = str(e.value)
    assert "offline package not installed: cs-parts-c" in message
    assert "pip install cs-parts-a cs-parts-c (they ship the files)" in message
    assert "CHRONOSCOPE_TEST__MODEL=/that/directory" in message
    assert not (tmp_path / "packaged").exists()


def test_a_gap_in_the_parts_is_an_error(packages, tmp_path):
    site, _ = packages
    data = site / "cs_parts_b" / "data"
    (data / "model.bin.part2").rename(data / "model.bin.part3")
    with pytest.raises(ModelUnavailable, match="not parts 1 to 2"):
        resolve("", SOURCE, cache_dir=tmp_path)


def test_one_package_of_whole_files_is_used_where_it_is(packages, tmp_path):
    site, _ = packages
    whole = site / "cs_whole" / "model"
    whole.mkdir(parents=True)
    (site / "cs_whole" / "__init__.py").write_text("")
    (whole / "config.json").write_text("{}")
    (whole / "model.bin").write_bytes(b"\0" * 100)
    importlib.invalidate_caches()
    assert resolve("", _source("cs_whole/model"), cache_dir=tmp_path) == whole
    # A package version names no hub revision: asked for one, the package is not used.
    with pytest.raises(ModelUnavailable):
        resolve("", _source("cs_whole/model"), cache_dir=tmp_path, revision="abc")
