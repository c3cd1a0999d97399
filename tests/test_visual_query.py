"""A text query among keyframes without torch: SigLIP's text tower in numpy
(model.siglip_numpy) gives transformers' vectors and calibration, and a command-line search
of a library with visual vectors answers from it with the moments and scores of the torch
path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from core.config import Settings
from fixtures.visual_tiny import build
from model import siglip_numpy, visual
from search import query
from test_cli_fast import cli_search

TEXTS = ["a red car crossing the street", "A Red Car", "people walking in a park " * 30,
         "x", "élan vital, ünïcode — and punctuation!"]


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    return build(tmp_path_factory.mktemp("siglip") / "siglip2-tiny")


@pytest.fixture(scope="module")
def library(tmp_path_factory, siglip, media):
    """A short sample video, visual signal only."""
    from indexer import pipeline
    s = Settings(home=tmp_path_factory.mktemp("home"), visual={"model": str(siglip)},
                 speech={"enabled": False}, ocr={"enabled": False})
    pipeline.index_video(s, pipeline.add_video(s, media / "his_girl_friday_6s.mp4"))
    return s


def test_numpy_text_tower_equals_transformers(siglip):
    assert siglip_numpy.supports(siglip)
    light, full = siglip_numpy.SiglipTextNumpy(siglip), visual.ClipBackend(siglip)
    got, want = light.texts(TEXTS, 2), full.texts(TEXTS, 3)
    assert got.shape == want.shape == (len(TEXTS), full.dim)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 1 - 1e-5
    assert light.calibration == full.calibration
    # Tokenized as the processor does: lowercased, truncated and padded to the full length.
    ids = full.processor.tokenizer([t.lower() for t in TEXTS], padding="max_length",
                                   truncation=True, max_length=full.text_length)["input_ids"]
    assert [e.ids for e in light.tokenizer.encode_batch([t.lower() for t in TEXTS])] == \
           [list(i) for i in ids]


def test_a_checkpoint_numpy_cannot_tokenize_is_left_to_the_full_model(siglip, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for f in siglip.iterdir():
        (other / f.name).symlink_to(f)
    assert siglip_numpy.supports(other)
    (other / "tokenizer.json").unlink()
    assert not siglip_numpy.supports(other)


def test_cli_text_search_among_keyframes_loads_no_torch(library, siglip, tmp_path,
                                                        monkeypatch):
    env = {"CHRONOSCOPE_VISUAL__MODEL": str(siglip)}
    got, probe = cli_search(library.home, tmp_path, "two people talking", "-k", "5", env=env)
    assert probe["heavy"] == [] and got and "visual" in {k for m in got for k in m["kinds"]}
    # The torch path: the full model's text tower, in this process.
    monkeypatch.setattr(siglip_numpy, "supports", lambda path: False)
    visual.TextQuery._loaded.clear()
    query._recent.clear()
    want = [m.to_json() for m in query.search(library, "two people talking", k=5)]
    visual.TextQuery._loaded.clear()
    assert [(m["video_id"], m["start"], m["end"], m["score"]) for m in got] == \
           [(m["video_id"], m["start"], m["end"], m["score"]) for m in want]
