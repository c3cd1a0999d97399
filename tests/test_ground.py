"""Retrieve, then ground: the top moments of a real search on a real sample video refined by
a tiny random Qwen3-VL (real tokenizer, processor, generate and parser). CPU, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from core.config import QwenSettings, Settings
from core.errors import BadQuery
from indexer import ground as grounding
from indexer import pipeline
from indexer.decode import sample_frames
from model.qwen import generate as gen
from qwen_tiny import build_tiny
from search import query
from search.moments import Moment

CLIP = "his_girl_friday_6s.mp4"
ASKED = "a man answers the telephone"


@pytest.fixture(scope="module")
def library(tmp_path_factory, media):
    """The sample indexed with speech only; the settings ground with a tiny Qwen3-VL."""
    root = tmp_path_factory.mktemp("ground")
    s = Settings(home=root / "home")
    s.ocr.enabled = s.visual.enabled = False
    vid = pipeline.add_video(s, media / CLIP)
    pipeline.index_video(s, vid)
    tiny = build_tiny(root / "qwen")
    q = s.model_copy(update={"qwen": QwenSettings(model=str(tiny), frame_side=64,
                                                  max_new_tokens=8, batch_size=4)})
    return s, q, vid


def moment(vid: str, start_ms: int, end_ms: int) -> Moment:
    return Moment(vid, start_ms, end_ms, 0.5, False, ["speech"], "hello")


def test_real_path_keeps_bounds_when_the_answer_cannot_be_placed(library):
    s, q, vid = library
    found = query.search(s, ASKED, k=3)
    assert found and all(m.video_id == vid for m in found)
    out = grounding.ground(q, found, ASKED)
    assert len(out) == len(found)
    duration = pipeline_duration(s, vid)
    for before, after in zip(found, out):
        # The random model answers noise: nothing placed, retrieval's bounds kept.
        assert after.grounded is False and after.to_json()["grounded"] is False
        assert (after.start_ms, after.end_ms) == (before.start_ms, before.end_ms)
        assert 0 <= after.start_ms < after.end_ms <= duration
    assert "grounded" not in found[0].to_json()     # a plain search says nothing of it


def pipeline_duration(settings, vid) -> int:
    from store import queries
    from store.db import session_scope
    with session_scope(settings) as ss:
        return queries.get_video(ss, vid).duration_ms


def test_window_is_the_moment_widened_and_clipped_to_the_video():
    m = moment("v", 4000, 5500)
    assert grounding.window(m, 6000, 10_000) == (0, 6000)
    assert grounding.window(m, 60_000, 1000) == (3000, 6500)
    assert grounding.window(m, None, 1000) == (3000, 6500)


def test_prompt_holds_absolute_labels_of_the_window_at_2_fps(library, media, monkeypatch):
    _, q, vid = library
    seen = []
    real = grounding.build_inputs

    def spy(processor, clips, asked, **kw):
        inputs = real(processor, clips, asked, **kw)
        seen.append(processor.tokenizer.batch_decode(inputs["input_ids"]))
        return inputs

    monkeypatch.setattr(grounding, "build_inputs", spy)
    grounding.ground(q, [moment(vid, 2000, 3000)], ASKED, margin_s=1.0)
    [[text]] = seen
    labels = [float(x) for x in re.findall(r"<(\d+\.\d) seconds><\|vision_start\|>", text)]
    frames = [f.t_ms for f in sample_frames(media / CLIP, start_ms=1000, end_ms=4000, fps=2.0)]
    assert len(frames) == 6                     # 2 fps over [1 s, 4 s)
    assert labels == [round(t / 1000, 1) for t in frames[::2]] == [1.0, 2.0, 3.0]
    assert f'When does "{ASKED}" happen' in text and "covers 1.0 s to 4.0 s" in text


def test_known_answers_move_the_bounds_clamped_to_the_window(library, monkeypatch):
    _, q, vid = library
    answers = ['Sure. {"start": 1.5, "end": "0:03.25", "caption": "he picks up the phone"}',
               '[{"start": "0:00.2", "end": 9, "caption": "he talks"}]']
    real = gen.generate_texts

    def answer(model, processor, inputs, *, max_new_tokens):
        rows = real(model, processor, inputs, max_new_tokens=max_new_tokens)
        assert len(rows) == 2                    # both moments in one batch
        return answers[:len(rows)]

    monkeypatch.setattr(gen, "generate_texts", answer)
    first, second = moment(vid, 2000, 3000), moment(vid, 2500, 3000)
    rest = moment(vid, 5000, 5500)
    out = grounding.ground(q, [first, second, rest], ASKED, top=2, margin_s=1.0)
    assert [(m.start_ms, m.end_ms, m.grounded) for m in out] == [
        (1500, 3250, True),                     # the answered seconds
        (1500, 4000, True),                     # clamped to the window [1.5 s, 4 s]
        (5000, 5500, None)]                     # past the top: untouched
    assert out[0].to_json()["grounded"] is True and out[0].to_json()["start"] == 1.5


def test_without_a_checkpoint_grounding_is_a_clear_query_error(library, tmp_path):
    s, _, vid = library
    with pytest.raises(BadQuery, match="CHRONOSCOPE_QWEN__MODEL"):
        grounding.ground(s, [moment(vid, 2000, 3000)], ASKED)
    with pytest.raises(BadQuery, match="CHRONOSCOPE_QWEN__MODEL"):
        grounding.ground(s, [], ASKED)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(CHRONOSCOPE_HOME=str(s.home), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "api.cli", "search", ASKED, "--ground"],
                          cwd=os.path.dirname(os.path.dirname(__file__)), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "CHRONOSCOPE_QWEN__MODEL" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    from fastapi.testclient import TestClient

    from api.http import create_app
    from store.db import session_scope
    from store.keys import create_key
    with session_scope(s) as ss:
        key = create_key(ss, tenant="default")[0]
    with TestClient(create_app(s)) as client:
        auth = {"X-API-Key": key}
        r = client.get("/v1/search", params={"q": ASKED, "ground": "true"}, headers=auth)
        assert r.status_code == 422 and "CHRONOSCOPE_QWEN__MODEL" in r.text, r.text
        plain = client.get("/v1/search", params={"q": ASKED}, headers=auth)
        assert plain.status_code == 200 and plain.json()["moments"]
        assert "grounded" not in plain.json()["moments"][0]
