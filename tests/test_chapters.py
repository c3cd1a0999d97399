"""Chapters and summaries: they tile [0, duration) with no gap or overlap, follow the topics
of the segments offline, take a long silence as a chapter of its own, and come from
Qwen3-VL (a tiny checkpoint scripted to answer) when it is configured."""

import json

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from core.errors import NotFound
from model import embed
from indexer import chapters
from search.chapters import get_summary
from store import shots as shot_rows
from store.db import session_scope
from store.schema import Segment, Summary, Video

COOKING = [
    "Start by heating a little olive oil in a heavy pan over medium heat.",
    "Chop the onions finely so they soften quickly without burning.",
    "Add two cloves of crushed garlic and stir for about a minute.",
    "Pour in the tomatoes and let the sauce simmer gently for twenty minutes.",
    "Season with salt, pepper and a pinch of sugar to balance the acidity.",
    "Meanwhile bring a large pot of salted water to a rolling boil.",
    "Cook the pasta until it is just tender, then drain it but keep a cup of the water.",
    "Toss the pasta with the sauce and a splash of the cooking water.",
    "Finish the dish with fresh basil leaves and grated parmesan cheese.",
    "Serve it straight away while the sauce is still hot.",
]
FOOTBALL = [
    "The home team pressed high from the kick off and won an early corner.",
    "Their striker headed the ball just over the crossbar in the tenth minute.",
    "The goalkeeper made a brilliant diving save to keep the score level.",
    "Just before half time the midfielder curled a free kick into the top corner.",
    "The referee showed a yellow card after a late tackle on the winger.",
    "In the second half the visitors switched to a back three to chase an equaliser.",
    "A quick counter attack ended with a low shot that hit the post.",
    "The coach brought on two substitutes to protect the one goal lead.",
    "Fans sang loudly as the final whistle confirmed the win and three points.",
    "The captain said after the match that the team defended with real spirit.",
]
SKY = [
    "Tonight Jupiter is the brightest object in the eastern sky after sunset.",
    "Through a small telescope you can see its four largest moons as points of light.",
    "Saturn rises later, and its rings are visible even at modest magnification.",
    "The Orion nebula is a cloud of gas where new stars are being born.",
    "Light from the Andromeda galaxy left it about two and a half million years ago.",
    "A meteor shower peaks this weekend, with up to sixty shooting stars an hour.",
    "Find a dark site away from city lights and let your eyes adapt for twenty minutes.",
    "The red colour of Mars comes from iron oxide dust on its surface.",
    "Astronomers measure the distance to nearby stars using parallax.",
    "The International Space Station passes overhead as a fast moving bright dot.",
]
TOPICS = (COOKING, FOOTBALL, SKY)


@pytest.fixture(scope="module")
def vectors_of(tmp_path_factory):
    from core.config import Settings
    s = Settings(home=tmp_path_factory.mktemp("embed"))
    texts = COOKING + FOOTBALL + SKY
    table = dict(zip(texts, embed.embed(texts, kind="document", settings=s)))
    table["model"] = embed.model_id(s)
    return table


def add_talk(settings, vectors_of, video_id, timed_texts, duration_ms):
    with session_scope(settings) as s:
        s.add(Video(id=video_id, filename=f"{video_id}.mp4", path="/dev/null", status="ready",
                    notes=[], duration_ms=duration_ms))
        s.flush()
        s.add_all(Segment(video_id=video_id, chunk_idx=0, kind="speech", start_ms=a,
                          end_ms=a + 15_000, text=t, model_id="test",
                          embedding=vectors_of[t].tobytes(), embed_model=vectors_of["model"])
                  for a, t in timed_texts)


def assert_tiles(data, duration_s):
    ch = data["chapters"]
    assert ch and ch[0]["start"] == 0.0 and ch[-1]["end"] == duration_s
    for a, b in zip(ch, ch[1:]):
        assert a["end"] == b["start"] and a["start"] < a["end"]


def test_chapters_follow_topics_and_tile_the_video(settings, vectors_of):
    talk = [(20_000 * i, t) for i, t in enumerate(COOKING + FOOTBALL + SKY)]
    add_talk(settings, vectors_of, "talk", talk, 605_000)
    chapters.build_summary(settings, "talk")
    chapters.build_summary(settings, "talk")        # replaces, never appends
    data = get_summary(settings, "talk")
    assert_tiles(data, 605.0)
    assert [c["start"] for c in data["chapters"]] == [0.0, 200.0, 400.0]
    for chapter, topic in zip(data["chapters"], TOPICS):
        words = set(" ".join(topic).lower().replace(",", " ").replace(".", " ").split())
        assert chapter["title"] and set(chapter["title"].lower().replace(",", "").split()) <= words
        assert chapter["summary"] and chapter["summary"].split(".")[0] in " ".join(topic)
    assert len({c["title"] for c in data["chapters"]}) == 3
    assert {c["thumbnail"] for c in data["chapters"]} == {None}     # no shots: no picture
    with session_scope(settings) as s:      # a cut at 195 s, a keyframe every 60 s or so
        shot_rows.replace_shots(s, video_id="talk", chunk_idx=0, shots=[
            (0, 195_000, [30_000, 90_000, 150_000]), (195_000, 420_000, [240_000, 390_000])])
        shot_rows.replace_shots(s, video_id="talk", chunk_idx=1, shots=[
            (420_000, 605_000, [500_000])])
    assert [c["thumbnail"] for c in get_summary(settings, "talk")["chapters"]] == \
        [f"/v1/videos/talk/thumbnails/{t}.jpg" for t in (30_000, 240_000, 500_000)]
    assert data["model"] == chapters.OFFLINE and "3 chapters" in data["summary"]
    with session_scope(settings) as s:
        assert s.query(Summary).filter_by(video_id="talk").count() == 4


def test_long_silence_is_a_chapter_and_silent_video_has_one(settings, vectors_of):
    # cooking, then ten silent minutes, then football
    talk = [(20_000 * i, t) for i, t in enumerate(COOKING)] + \
           [(800_000 + 20_000 * i, t) for i, t in enumerate(FOOTBALL)]
    add_talk(settings, vectors_of, "gap", talk, 1_000_000)
    chapters.build_summary(settings, "gap")
    data = get_summary(settings, "gap")
    assert_tiles(data, 1000.0)
    assert [(c["start"], c["title"]) for c in data["chapters"]][1] == \
        (195.0, chapters.EMPTY_TITLE)           # from the end of the last line
    assert [c["start"] for c in data["chapters"]] == [0.0, 195.0, 800.0]

    add_talk(settings, vectors_of, "mute", [], 90_000)
    chapters.build_summary(settings, "mute")
    data = get_summary(settings, "mute")
    assert data["chapters"] == [{"start": 0.0, "end": 90.0, "title": chapters.EMPTY_TITLE,
                                 "summary": "", "thumbnail": None}]     # no shots stored
    with pytest.raises(NotFound):
        get_summary(settings, "nope")


def test_unknown_duration_and_unavailable_qwen_fall_back(sqlite_settings, vectors_of):
    settings = sqlite_settings
    settings.qwen.model = "/nonexistent/qwen3-vl"      # configured but not there
    add_talk(settings, vectors_of, "x", [(0, COOKING[0]), (30_000, COOKING[1])], None)
    chapters.build_summary(settings, "x")
    data = get_summary(settings, "x")
    assert data["model"] == chapters.OFFLINE
    assert_tiles(data, 45.0)                           # the last segment's end


@hsettings(max_examples=60, deadline=None)
@given(st.integers(0, 4_000_000), st.lists(st.tuples(st.integers(0, 4_000_000),
                                                     st.integers(0, 60_000)), max_size=60),
       st.integers(0, 3))
def test_plan_always_tiles(duration, spans, seed):
    spans = sorted((min(a, duration), min(a + d, duration)) for a, d in spans)
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((len(spans), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    starts = chapters.plan_chapters([a for a, _ in spans], vecs, duration,
                                    [b for _, b in spans], seed=seed)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(0 <= t < max(duration, 1) for t in starts)
    _, max_len = chapters.chapter_lengths(duration)
    bounds = starts + [duration]
    assert all(b - a <= max_len for a, b in zip(bounds, bounds[1:]))
    tiled = chapters.cover([{"start_ms": t, "title": "t"} for t in starts], duration)
    assert [c["start_ms"] for c in tiled] == starts and tiled[-1]["end_ms"] == duration


def test_cover_repairs_model_chapters():
    got = chapters.cover([{"start_ms": 50_000, "end_ms": 10, "title": "b"},
                          {"start_ms": 5_000, "end_ms": 99, "title": "a"},
                          {"start_ms": 50_000, "title": "dup"},
                          {"start_ms": 120_000, "title": "beyond the end"}], 100_000)
    assert [(c["start_ms"], c["end_ms"], c["title"]) for c in got] == \
        [(0, 50_000, "a"), (50_000, 100_000, "b")]


@pytest.fixture(scope="module")
def scripted_qwen(tmp_path_factory):
    """A tiny random Qwen3-VL whose greedy decoding spells a chapter answer (out of order,
    times as mm:ss) through the real tokenizer, generate and parser."""
    qwen_tiny = pytest.importorskip("qwen_tiny")
    base = qwen_tiny.build_tiny(tmp_path_factory.mktemp("qwen") / "base")
    answer = json.dumps({"summary": "Cooking, then football.", "chapters": [
        {"start": "3:20", "title": "The match", "summary": "A one goal win."},
        {"start": "0:00", "title": "Tomato pasta", "summary": "Sauce and pasta."}]})
    return qwen_tiny.variant(base, tmp_path_factory.mktemp("qwen") / "scripted", answer=answer)


def test_qwen_writes_chapters_when_configured(sqlite_settings, vectors_of, scripted_qwen):
    settings = sqlite_settings
    settings.qwen.model = str(scripted_qwen)
    talk = [(20_000 * i, t) for i, t in enumerate(COOKING + FOOTBALL)]
    add_talk(settings, vectors_of, "q", talk, 400_000)
    chapters.build_summary(settings, "q")
    data = get_summary(settings, "q")
    assert data["model"] != chapters.OFFLINE and data["summary"] == "Cooking, then football."
    assert [(c["start"], c["end"], c["title"]) for c in data["chapters"]] == \
        [(0.0, 200.0, "Tomato pasta"), (200.0, 400.0, "The match")]
