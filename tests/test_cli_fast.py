"""`chronoscope search` from a cold command line: a fresh process answers from the numpy
query embedder without importing torch, sentence-transformers or the models of indexing,
and gives the same moments (same order, scores to 3 decimals) as the sentence-transformers
query path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model import embed
from search import query
from test_search import DECOY, DISTRACTORS, QUERY, RED_CAR, TARGET, add_video, vec  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sentence_transformers", "transformers", "faster_whisper", "ctranslate2",
         "pytesseract", "av", "PIL", "scipy", "sklearn", "celery", "fastapi", "uvicorn",
         # nor what a search on a migrated SQLite library with no Hugging Face cache has no
         # use for: the migration tool, the Postgres driver, the hub's API
         "alembic", "psycopg", "huggingface_hub.hf_api")
# Runs the CLI in this process and reports which heavy modules it imported.
PROBE = """
import json, sys
from api.cli.commands import app
try:
    app(sys.argv[2:], prog_name="chronoscope")
except SystemExit as e:
    code = e.code
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "heavy": [m for m in %r if m in sys.modules]}, f)
""" % (HEAVY,)
QUERIES = [QUERY, "a red car at the crossing", "the referee and the yellow card",
           "quarterly budget"]


@pytest.fixture
def library(sqlite_settings, vec):  # noqa: F811
    from indexer import index_sync
    add_video(sqlite_settings, vec, "v1", [(i * 4, i * 4 + 3, "speech", t) for i, t in
                                           enumerate(DISTRACTORS + [DECOY, TARGET])])
    add_video(sqlite_settings, vec, "v2", [(10, 12, "speech", RED_CAR[0]),
                                           (12, 14, "speech", RED_CAR[1]),
                                           (30, 40, "screen_text", "Slide: Quarterly results")])
    index_sync.sync(sqlite_settings)
    return sqlite_settings


def cli_search(home: Path, tmp_path: Path, *args, env: dict | None = None
               ) -> tuple[list, dict]:
    """`env`: more CHRONOSCOPE_ settings than the data directory."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")},
           **(env or {})}
    env.update(CHRONOSCOPE_HOME=str(home), HF_HUB_OFFLINE="1")
    report = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), "search", *args, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    probe = json.loads(report.read_text())
    assert probe["code"] in (0, None), proc.stderr
    return json.loads(proc.stdout), probe


def test_cli_search_loads_no_torch_and_matches_the_torch_path(library, tmp_path, monkeypatch):
    for q in QUERIES:
        got, probe = cli_search(library.home, tmp_path, q, "-k", "5")
        assert probe["heavy"] == [], probe
        # Today's path: the query embedded by sentence-transformers (torch), in process.
        model = embed.Embedder.get(library)
        full = model.backend
        monkeypatch.setattr(model, "backend_for", lambda kind: full)
        query._recent.clear()
        want = [m.to_json() for m in query.search(library, q, k=5)]
        monkeypatch.undo()
        query._recent.clear()
        assert [(m["video_id"], m["start"], m["end"], m["text"]) for m in got] == \
               [(m["video_id"], m["start"], m["end"], m["text"]) for m in want], q
        assert [m["score"] for m in got] == [m["score"] for m in want] and got, q


def test_cli_search_with_filters_and_no_library(tmp_path):
    """An empty data directory: the query is still embedded (numpy), nothing is found, and
    still nothing heavy is imported but alembic, which creates the new database."""
    got, probe = cli_search(tmp_path / "empty", tmp_path, "anything at all", "--kind", "speech",
                            "--start", "1", "--end", "9")
    assert got == [] and probe["heavy"] == ["alembic"]


def test_a_model_in_the_hub_cache_is_still_found_there(tmp_path):
    """The cache folder checked before importing the hub's API is the hub's own layout: a
    snapshot there resolves (from the cache, not the offline package)."""
    from model.resolve import resolve
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert resolve("", embed.SOURCE, cache_dir=tmp_path) == snapshot
    assert resolve("", embed.SOURCE, cache_dir=tmp_path / "other") != snapshot


def test_ground_is_for_searches_by_words():
    """Grounding refines the moments of a question in words; with only an example picture
    or moment there is nothing to place, and the command says so before any work."""
    from typer.testing import CliRunner

    from api.cli.commands import app
    got = CliRunner().invoke(app, ["search", "--like", "abcd@3", "--ground"])
    assert got.exit_code == 2 and "--ground refines a search by words" in got.output
