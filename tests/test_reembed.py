"""`chronoscope reembed`: a library embedded with MiniLM is re-embedded with another text
embedder (here MiniLM's files under another name, so a different model id with known-good
vectors), every segment records the new model, the index is rebuilt for it, and vector
search works after it and not before. Killed part-way, a second run finishes the rest."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from sqlalchemy import select

from core.config import EmbedSettings, Settings
from indexer import index_sync
from indexer.reembed import reembed
from model import embed
from search.query import search
from store.db import session_scope
from store.schema import Segment, Video

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["the committee approved the quarterly budget", "a red car crosses the bridge",
         "the chef adds salt to the soup", "the goalkeeper saves a penalty",
         "rain is expected over the mountains tomorrow"]


@pytest.fixture(scope="module")
def new_model(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("models") / "minilm-renamed"
    shutil.copytree(embed.Embedder.get(Settings()).path, directory)
    return str(directory)


def minilm_library(home: Path) -> Settings:
    old = Settings(home=home)
    vectors = embed.embed(TEXTS, settings=old)
    with session_scope(old) as s:
        s.add(Video(id="v1", tenant="default", filename="v1.mp4", path="/dev/null",
                    status="ready", notes=[], duration_ms=len(TEXTS) * 10_000))
        s.flush()
        s.add_all(Segment(video_id="v1", chunk_idx=0, kind="speech", start_ms=i * 10_000,
                          end_ms=i * 10_000 + 5_000, text=t, model_id="whisper",
                          embedding=v.tobytes(), embed_model=embed.model_id(old))
                  for i, (t, v) in enumerate(zip(TEXTS, vectors)))
        # A keyframe embedded by the image-text model: not the text embedder's to redo.
        s.add(Segment(video_id="v1", chunk_idx=0, kind="visual", start_ms=0, end_ms=1000,
                      text="", model_id="siglip", embedding=b"\0" * 16, embed_model="siglip"))
    index_sync.sync(old)
    return old


def embed_models(settings: Settings) -> dict[str, str]:
    with session_scope(settings) as s:
        return dict(s.execute(select(Segment.text, Segment.embed_model)
                              .where(Segment.kind == "speech")).all())


def test_reembed_switches_the_library_and_resumes(tmp_path, new_model):
    old = minilm_library(tmp_path / "home")
    new = old.model_copy(update={"embed": EmbedSettings(model=new_model)})
    target = embed.model_id(new)
    assert target != embed.model_id(old)
    query = "who kept the ball out of the net"
    assert search(old, query, mode="vector")[0].start_ms == 30_000
    assert search(new, query, mode="vector") == []     # vectors of another model: unusable

    class Killed(Exception):
        pass

    def kill(done, total):
        assert total == len(TEXTS)
        raise Killed
    with pytest.raises(Killed):
        reembed(new, batch=2, progress=kill)
    assert sorted(embed_models(old).values()).count(target) == 2   # the first batch stayed

    result = reembed(new, batch=2)
    assert result == {"model": target, "embedded": len(TEXTS) - 2,
                      "vectors": len(TEXTS) + 1}   # and the keyframe of the visual space
    assert set(embed_models(old).values()) == {target}
    with session_scope(old) as s:
        assert s.scalar(select(Segment.embed_model).where(Segment.kind == "visual")) == "siglip"
    assert search(new, query, mode="vector")[0].start_ms == 30_000
    assert reembed(new)["embedded"] == 0                 # idempotent


def test_reembed_command(tmp_path, new_model):
    minilm_library(tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(CHRONOSCOPE_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "api.cli", "reembed", "--model", new_model,
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"].startswith("minilm-renamed@") and out["embedded"] == len(TEXTS)
    bad = subprocess.run([sys.executable, "-m", "api.cli", "reembed", "--model",
                          str(tmp_path / "nowhere")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and "not a directory holding" in bad.stderr
