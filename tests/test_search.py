"""Moment search and the FAISS index, on SQLite and Postgres, with real MiniLM embeddings.

Segments are written straight into the database (as the pipeline would), so each test knows
exactly what is where. The filter tests are built so that a post-filter over a global
top-k would fail: 60 identical, better-matching decoys fill every global list, and the only
match inside the filter is a paraphrase that ranks below all of them."""

import multiprocessing
import os

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from core.errors import BadQuery
from model import embed
from search import query, vectors
from search.query import Moment
from store.db import session_scope
from store.schema import Segment, Video

DISTRACTORS = [
    "The home team pressed high from the kick off and won an early corner.",
    "The goalkeeper made a brilliant diving save to keep the score level.",
    "The referee showed a yellow card after a late tackle on the winger.",
    "Fans sang loudly as the final whistle confirmed the win.",
    "Tonight Jupiter is the brightest object in the eastern sky after sunset.",
    "Saturn rises later, and its rings are visible even at modest magnification.",
    "A meteor shower peaks this weekend, with up to sixty shooting stars an hour.",
    "Chop the onions finely so they soften quickly without burning.",
    "Cook the pasta until it is just tender, then drain it.",
    "Finish the dish with fresh basil leaves and grated parmesan cheese.",
    "The train to the airport leaves every fifteen minutes from platform four.",
    "Remember to water the tomato plants early in the morning during summer.",
    "The museum opens a new exhibition of impressionist paintings next month.",
    "Our dog learned to fetch the newspaper from the end of the driveway.",
    "Mountain bikers should check their brakes before every steep descent.",
    "The library extended its opening hours during the exam period.",
]
DECOY = "The quarterly budget was cut by ten percent to pay for rising energy costs."
TARGET = "Spending will shrink next year because electricity got more expensive."
QUERY = "budget cut because of energy prices"
RED_CAR = ["A red car slowly turns left at the intersection", "and stops right at the crosswalk."]


@pytest.fixture(scope="module")
def vec(tmp_path_factory):
    """Text -> unit MiniLM vector, each text embedded once for the whole module."""
    from core.config import Settings
    settings = Settings(home=tmp_path_factory.mktemp("embed"))
    texts = DISTRACTORS + [DECOY, TARGET] + RED_CAR + [
        "Welcome everyone to the weekly planning meeting.",
        "Model number XJ9000 ships with a spare battery.",
        "Slide: Quarterly results", "The speaker thanks the audience and leaves the stage."]
    table = dict(zip(texts, embed.embed(texts, kind="document", settings=settings)))
    model = embed.model_id(settings)

    def get(text: str) -> np.ndarray:
        if text not in table:
            table[text] = embed.embed([text], kind="document", settings=settings)[0]
        return table[text]
    get.model = model
    return get


def add_video(settings, vec, video_id: str, segments, *, tenant="default", duration_ms=None,
              model=None):
    """segments: (start_s, end_s, kind, text). Returns the new segment ids."""
    with session_scope(settings) as s:
        end = max((b for _, b, _, _ in segments), default=0)
        s.add(Video(id=video_id, tenant=tenant, filename=f"{video_id}.mp4", path="/dev/null",
                    status="ready", notes=[], duration_ms=duration_ms or round(end * 1000)))
        s.flush()
        rows = [Segment(video_id=video_id, chunk_idx=0, kind=kind, start_ms=round(a * 1000),
                        end_ms=round(b * 1000), text=text, model_id="test",
                        embedding=vec(text).tobytes(), embed_model=model or vec.model)
                for a, b, kind, text in segments]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def db_ids(settings, model) -> np.ndarray:
    with session_scope(settings) as s:
        return np.sort(np.asarray(s.scalars(select(Segment.id).where(
            Segment.embed_model == model, Segment.embedding.is_not(None))).all(), np.int64))


def library(settings, vec, *, videos=20, per_video=30):
    """`videos` videos of `per_video` 10 s segments every 15 s (5 s apart, so nothing merges
    at a 1 s gap); three decoys per video at 15, 105 and 300 s (60 in all, more than any
    global list of 50 can hold); the target in v17 at 420 s."""
    for v in range(videos):
        segs = []
        for i in range(per_video):
            t = 15 * i
            text = DISTRACTORS[(i + v) % len(DISTRACTORS)]
            if t in (15, 105, 300):
                text = DECOY
            if v == 17 and t == 420:
                text = TARGET
            segs.append((t, t + 10, "speech", text))
        add_video(settings, vec, f"v{v:02d}", segs)


# ---------------------------------------------------------------------------------------
# Filters inside retrieval

@pytest.mark.parametrize("path", ["exact", "faiss-flat", "faiss-ivf"])
def test_narrow_filter_returns_the_only_match_among_many(settings, vec, path, monkeypatch):
    settings.search.merge_gap_s = 1.0
    if path != "exact":      # push the filtered set through FAISS with an id selector
        monkeypatch.setattr(query, "EXACT_CANDIDATES", 0)
    if path == "faiss-ivf":
        settings.search.exact_max = 100
    library(settings, vec)
    vectors.sync(settings)
    assert vectors.load(settings).state.main_kind == ("ivf" if path == "faiss-ivf" else "flat")

    # Globally, the 60 decoys fill the top: a post-filter of a global top-50 would miss it.
    top = query.search(settings, QUERY, k=50)
    assert all(TARGET not in m.text for m in top)
    assert DECOY in top[0].text and not top[0].weak

    for kw in ({"video_ids": ["v17"], "start_ms": 400_000, "end_ms": 450_000},
               {"start_ms": 412_000, "end_ms": 433_000}):
        found = query.search(settings, QUERY, k=10, **kw)
        assert found[0].video_id == "v17", kw
        assert (found[0].start_ms, found[0].end_ms) == (420_000, 430_000)
        assert found[0].text == TARGET
        for m in found:   # every moment overlaps the range
            assert m.end_ms > kw["start_ms"] and m.start_ms < kw["end_ms"]
    # as many results as asked when the range holds them: v17 has 405, 420 and 435 s in
    # [400, 450) (the one at 390-400 s ends as the range starts)
    in_range = query.search(settings, QUERY, video_ids=["v17"], start_ms=400_000,
                            end_ms=450_000, k=10)
    assert sorted(m.start_ms for m in in_range) == [405_000, 420_000, 435_000]
    assert len(query.search(settings, QUERY, video_ids=["v17"], start_ms=400_000,
                            end_ms=450_000, k=2)) == 2


def test_kind_and_tenant_filters(settings, vec):
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY), (10, 15, "screen_text", DECOY)])
    add_video(settings, vec, "b", [(0, 5, "speech", DECOY)], tenant="other")
    vectors.sync(settings)
    kinds = query.search(settings, QUERY, kinds=["screen_text"], k=10)
    assert [(m.video_id, m.kinds) for m in kinds] == [("a", ["screen_text"])]
    own = query.search(settings, QUERY, tenant="other", k=10)
    assert [m.video_id for m in own] == ["b"]
    assert {m.video_id for m in query.search(settings, QUERY, k=10)} == {"a", "b"}
    # the text retriever applies the same filters in its own SQL
    f = query.Filters(kinds=("screen_text",))
    assert len(query.text_search(settings, QUERY, 10, f)) == 1
    assert len(query.text_search(settings, QUERY, 10, query.Filters(tenant="other"))) == 1
    assert query.text_search(settings, QUERY, 10, query.Filters(start_ms=20_000)) == []


# ---------------------------------------------------------------------------------------
# Moments and scores

def test_neighbouring_hits_merge_into_one_moment(settings, vec):
    add_video(settings, vec, "car", [
        (0, 4, "speech", DISTRACTORS[11]),
        (10, 13, "speech", RED_CAR[0]), (14, 17, "speech", RED_CAR[1]),
        (17, 19, "screen_text", "A red car slowly turns left at the intersection"),
        (19, 22, "speech", DISTRACTORS[12]), (40, 44, "speech", DISTRACTORS[13])])
    vectors.sync(settings)
    q = "the red car turning at the crossroads"
    top = query.search(settings, q, k=5)[0]
    # the spoken line and the same line on screen 4 s later make one moment, its bounds
    # theirs; the lines around them, far weaker matches, are not pulled in (a moment grows
    # over comparable hits only, so a ticking clock does not become one long moment)
    assert (top.start_ms, top.end_ms) == (10_000, 19_000)
    assert top.kinds == ["screen_text", "speech"]
    assert [g["start_ms"] for g in top.segments] == [10_000, 17_000]
    settings.search.merge_gap_s = 0.5          # the 1 s pause now separates them
    split = query.search(settings, q, k=5)
    assert (split[0].start_ms, split[0].end_ms) in {(10_000, 13_000), (17_000, 19_000)}


def test_scores_rank_and_mark_weak(settings, vec):
    add_video(settings, vec, "mix", [(15 * i, 15 * i + 10, "speech", t)
                                     for i, t in enumerate(DISTRACTORS + [DECOY])])
    vectors.sync(settings)
    good = query.search(settings, QUERY, k=5)
    assert good[0].text == DECOY and not good[0].weak and good[0].score > 0.7
    scores = [m.score for m in good]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    nothing = query.search(settings, "quantum chromodynamics on a lattice", k=5)
    assert nothing and all(m.weak for m in nothing)      # "no good match" is an answer
    assert all(m.score < settings.search.weak_score for m in nothing)


def test_text_match_finds_what_embeddings_blur(settings, vec):
    lines = DISTRACTORS + ["Model number XJ9000 ships with a spare battery."]
    add_video(settings, vec, "tv", [(15 * i, 15 * i + 10, "speech", t) for i, t in enumerate(lines)])
    vectors.sync(settings)
    hits = query.text_search(settings, "xj9000", 10, query.Filters())
    assert len(hits) == 1
    assert query.search(settings, "xj9000", k=3, mode="text")[0].text == lines[-1]
    assert query.search(settings, "xj9000", k=3)[0].text == lines[-1]


def test_moment_json_is_in_seconds_with_milliseconds():
    m = Moment("v", 1234, 5678, 0.51234, False, ["speech"], "hi",
               [{"id": 1, "start_ms": 1234, "end_ms": 5678, "kind": "speech", "text": "hi",
                 "score": 0.5}])
    j = m.to_json()
    assert (j["start"], j["end"], j["score"]) == (1.234, 5.678, 0.512)
    assert j["segments"][0]["start"] == 1.234 and "start_ms" not in j["segments"][0]


@pytest.mark.parametrize("kw", [
    {"query": ""}, {"query": "   "}, {"start_ms": 5000, "end_ms": 5000},
    {"start_ms": 6000, "end_ms": 5000}, {"start_ms": -1}, {"end_ms": -5},
    {"kinds": ["audio"]}, {"k": 0}, {"k": 1001}])
def test_bad_queries_are_refused(sqlite_settings, kw):
    args = {"query": "budget"} | kw
    with pytest.raises(BadQuery):
        query.search(sqlite_settings, args.pop("query"), **args)


# ---------------------------------------------------------------------------------------
# The index stays in step with the database

def test_index_follows_deletes_and_reindexing(settings, vec):
    m = vec.model
    add_video(settings, vec, "a", [(0, 5, "speech", DISTRACTORS[0]), (6, 9, "speech", DECOY)])
    add_video(settings, vec, "c", [(0, 5, "speech", DISTRACTORS[3])], model="other-model")
    add_video(settings, vec, "b", [(0, 5, "speech", DISTRACTORS[1]),
                                   (6, 9, "speech", DISTRACTORS[2])])
    vectors.sync(settings)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, m))   # c's model left out

    # delete a video: its vectors go (a deletion set until compaction)
    with session_scope(settings) as s:
        s.delete(s.get(Video, "a"))
    vectors.sync(settings)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, m))
    assert all(r.video_id != "a" for r in query.search(settings, QUERY, k=10))

    # re-index b: its rows replaced (on SQLite the new rows reuse the freed ids, since b's
    # were the highest), stamp bumped as the pipeline does after a chunk
    old = set(db_ids(settings, m).tolist())
    with session_scope(settings) as s:
        s.execute(delete(Segment).where(Segment.video_id == "b"))
    add_segments = [(0, 5, "speech", TARGET), (6, 9, "speech", DISTRACTORS[4])]
    with session_scope(settings) as s:
        s.add_all(Segment(video_id="b", chunk_idx=0, kind=k, start_ms=a * 1000, end_ms=b * 1000,
                          text=t, model_id="test", embedding=vec(t).tobytes(), embed_model=m)
                  for a, b, k, t in add_segments)
        s.execute(update(Video).where(Video.id == "b").values(chunks_done=1))
    vectors.sync(settings)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, m))
    if settings.db_url.startswith("sqlite"):
        assert set(db_ids(settings, m).tolist()) & old   # ids were reused
    found = query.search(settings, "electricity is getting expensive so spending shrinks", k=1)
    assert found[0].text == TARGET and found[0].score > 0.5
    hits = dict(vectors.search(settings, vec(TARGET), 5))
    assert max(hits.values()) > 0.99           # the new vector, not the stale one

    # a remove_video drops vectors at once; sync restores what the database still has
    vectors.remove_video(settings, "b")
    assert not np.isin(db_ids(settings, m), vectors.ids(settings)).any()
    vectors.sync(settings, full=True)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, m))
    assert vectors.rebuild(settings) == len(db_ids(settings, m))
    assert np.array_equal(vectors.ids(settings), db_ids(settings, m))


def test_index_type_by_size_and_compaction(settings, vec, monkeypatch):
    monkeypatch.setattr(vectors, "DELTA_MIN", 4)
    settings.search.exact_max = 60
    rng = np.random.default_rng(0)
    base = np.stack([vec(t) for t in DISTRACTORS])

    def noisy(n):
        x = base[rng.integers(0, len(base), n)] + 0.8 * rng.standard_normal((n, 384)) / 20
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def add(video_id, n):
        with session_scope(settings) as s:
            s.add(Video(id=video_id, filename="x", path="/dev/null", status="ready", notes=[]))
            s.flush()
            s.add_all(Segment(video_id=video_id, chunk_idx=0, kind="speech", start_ms=i * 1000,
                              end_ms=i * 1000 + 900, text=f"line {i}", model_id="t",
                              embedding=v.tobytes(), embed_model=vec.model)
                      for i, v in enumerate(noisy(n)))

    add("small", 40)
    vectors.sync(settings)
    st = vectors.load(settings).state
    assert (st.main_kind, st.main_count, len(st.delta_ids)) == ("flat", 40, 0)
    add("more", 10)                       # 10 > DELTA_MIN: folded into main at once
    vectors.sync(settings)
    st = vectors.load(settings).state
    assert (st.main_kind, st.main_count, len(st.delta_ids)) == ("flat", 50, 0)
    add("big", 400)                        # past exact_max: retrained as IVF
    vectors.sync(settings)
    st = vectors.load(settings).state
    assert st.main_kind == "ivf" and st.main_count == 450
    assert np.array_equal(vectors.ids(settings), db_ids(settings, vec.model))
    # exact top-10 of the database vs what the IVF returns: the same best hit
    q = noisy(1)[0]
    got = vectors.search(settings, q, 10)
    with session_scope(settings) as s:
        rows = s.execute(select(Segment.id, Segment.embedding)).all()
    exact = vectors.exact_search(q, np.array([r[0] for r in rows]),
                                 np.stack([np.frombuffer(r[1], np.float32) for r in rows]), 10)
    assert got[0][0] == exact[0][0]
    assert len({i for i, _ in got} & {i for i, _ in exact}) >= 8
    with session_scope(settings) as s:     # shrink well below exact_max: back to flat
        s.delete(s.get(Video, "big"))
    vectors.sync(settings)
    st = vectors.load(settings).state
    assert (st.main_kind, st.main_count, len(st.deleted)) == ("flat", 50, 0)
    assert not list(settings.home.glob(".*tmp*"))      # no temp file left behind


def test_torn_write_is_detected_and_rebuilt(sqlite_settings, vec):
    settings = sqlite_settings
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY)])
    vectors.sync(settings)
    state_path = vectors._state_path(settings)
    stale = state_path.read_bytes()
    add_video(settings, vec, "b", [(0, 5, "speech", TARGET)])
    vectors.rebuild(settings)
    state_path.write_bytes(stale)   # a crash between the main file's rename and the state's
    vectors.sync(settings)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, vec.model))


def _worker(settings, video_id, vectors_, model, barrier):
    from store import db
    db._engines.clear()       # never share a parent's connections across fork
    barrier.wait()
    with session_scope(settings) as s:
        s.add(Video(id=video_id, filename="x", path="/dev/null", status="ready", notes=[]))
        s.flush()
        s.add_all(Segment(video_id=video_id, chunk_idx=0, kind="speech", start_ms=i * 1000,
                          end_ms=i * 1000 + 900, text=f"{video_id} {i}", model_id="t",
                          embedding=v.tobytes(), embed_model=model)
                  for i, v in enumerate(vectors_))
    vectors.sync(settings)


def test_concurrent_workers_leave_a_consistent_index(settings, vec):
    embed.model_id(settings)               # loaded before fork: children inherit it
    with session_scope(settings):
        pass
    rng = np.random.default_rng(1)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = []
    for w in range(4):
        x = rng.standard_normal((25, 384)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        procs.append(ctx.Process(target=_worker, args=(settings, f"w{w}", x, vec.model, barrier)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    vectors.sync(settings)
    assert np.array_equal(vectors.ids(settings), db_ids(settings, vec.model))
    assert len(vectors.ids(settings)) == 100
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Video)) == 4
    assert os.path.exists(settings.faiss_path)


def test_video_and_tenant_filters_take_ids_from_the_index(settings, vec, monkeypatch):
    """Past the exact path, a tenant or video filter restricts FAISS with the ids the index
    keeps per video (no segment ids read from the database), and a tenant that owns every
    indexed video searches the index unrestricted."""
    monkeypatch.setattr(query, "EXACT_CANDIDATES", 0)
    add_video(settings, vec, "mine1", [(0, 5, "speech", DECOY), (6, 9, "speech", DISTRACTORS[0])])
    add_video(settings, vec, "mine2", [(0, 5, "speech", TARGET)])
    add_video(settings, vec, "theirs", [(0, 5, "speech", DECOY)], tenant="other")
    vectors.sync(settings)
    seen = []
    real = vectors.search
    monkeypatch.setattr(vectors, "search", lambda st, q, n, candidates=None: (
        seen.append(candidates), real(st, q, n, candidates))[1])

    found = query.search(settings, QUERY, tenant="other", k=5)
    assert [m.video_id for m in found] == ["theirs"]
    with session_scope(settings) as s:
        theirs = s.scalars(select(Segment.id).where(Segment.video_id == "theirs")).all()
        mine2 = s.scalars(select(Segment.id).where(Segment.video_id == "mine2")).all()
    assert sorted(seen[-1].tolist()) == sorted(theirs)
    found = query.search(settings, QUERY, tenant="default", k=5)
    assert {m.video_id for m in found} == {"mine1", "mine2"}
    assert sorted(seen[-1].tolist()) == sorted(set(vectors.ids(settings)) - set(theirs))
    found = query.search(settings, QUERY, video_ids=["mine2"], tenant="default", k=5)
    assert [m.video_id for m in found] == ["mine2"] and seen[-1].tolist() == mine2
    assert query.search(settings, QUERY, video_ids=["theirs"], tenant="default", k=5) == []

    with session_scope(settings) as s:      # one tenant left: it owns the whole index
        s.delete(s.get(Video, "theirs"))
    vectors.sync(settings)
    found = query.search(settings, QUERY, tenant="default", k=5)
    assert {m.video_id for m in found} == {"mine1", "mine2"} and seen[-1] is None


def test_a_repeated_query_is_embedded_once(sqlite_settings, vec, monkeypatch):
    settings = sqlite_settings
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY), (30, 35, "speech", TARGET)])
    vectors.sync(settings)
    calls = []
    real = embed.embed
    monkeypatch.setattr(embed, "embed", lambda texts, **kw: (calls.append(texts),
                                                             real(texts, **kw))[1])
    words = "energy costs forced a smaller budget"
    first = query.search(settings, words, k=2)
    again = query.search(settings, words, k=2, start_ms=20_000)
    assert calls == [[words]]
    assert first[0].text == DECOY and again[0].text == TARGET
    query.search(settings, words + "?", k=2)
    assert len(calls) == 2
