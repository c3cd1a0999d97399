"""Moment search and the FAISS index, on SQLite and Postgres, with real MiniLM embeddings.

Segments are written straight into the database (as the pipeline would), so each test knows
exactly what is where. The filter tests are built so that a post-filter over a global
top-k would fail: 60 identical, better-matching decoys fill every global list, and the only
match inside the filter is a paraphrase that ranks below all of them."""

import json
import multiprocessing
import os

import faiss
import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from core.errors import BadQuery
from core.types import KINDS
from model import embed
from indexer import index_sync
from search import query
from search.index import faiss_ops, reader, state as index_state
from search.index.filters import Attrs, Filter, match
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


def assert_in_step(settings, model):
    """The index holds exactly the model's embedded segments, each with its own video, times
    and kind (what filters test), in main and in the delta."""
    assert np.array_equal(reader.ids(settings), db_ids(settings, model))
    loaded = reader.load(settings)
    st = loaded.state
    names = {r["ord"]: v for v, r in st.videos.items()}
    live = ~np.isin(loaded.lay.ids, st.deleted)
    ids = np.concatenate([loaded.lay.ids[live], st.delta_ids])
    attrs = Attrs.concat([loaded.lay.attrs.take(live), st.delta_attrs])
    with session_scope(settings) as s:
        rows = {r.id: r for r in s.execute(select(
            Segment.id, Segment.video_id, Segment.start_ms, Segment.end_ms, Segment.kind))}
    got = [(names[int(o)], int(a), int(b), KINDS[c])
           for o, a, b, c in zip(attrs.video, attrs.start, attrs.end, attrs.kind)]
    assert got == [(rows[i].video_id, rows[i].start_ms, rows[i].end_ms, rows[i].kind)
                   for i in ids.tolist()]


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
    """exact: one video under an IVF is scored from its stored embeddings (the time-only
    filter still goes through the IVF); faiss-*: every filter is evaluated inside FAISS."""
    settings.search.merge_gap_s = 1.0
    if path == "faiss-ivf":
        monkeypatch.setattr(query, "EXACT_CANDIDATES", 0)
    if path != "faiss-flat":
        settings.search.exact_max = 100
    library(settings, vec)
    index_sync.sync(settings)
    assert reader.load(settings).state.main_kind == ("flat" if path == "faiss-flat" else "ivf")

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
    index_sync.sync(settings)
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
    index_sync.sync(settings)
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


def test_a_long_slide_gives_its_time_to_the_sentence_said_with_it(settings, vec):
    # a slide on screen for a minute and the spoken line that answers during it: both match
    # and make one moment, timed by the line (a 60 s moment says nothing to the second)
    add_video(settings, vec, "slide", [
        (0, 60, "screen_text", "A red car turns left at the intersection"),
        (5, 9, "speech", DISTRACTORS[0]), (30, 34, "speech", RED_CAR[0]),
        (50, 54, "speech", DISTRACTORS[1])])
    index_sync.sync(settings)
    top = query.search(settings, "the red car turning at the crossroads", k=5)[0]
    assert top.kinds == ["screen_text", "speech"]
    assert (top.start_ms, top.end_ms) == (30_000, 34_000)
    # a slide with nothing said matching keeps its own bounds
    alone = query.search(settings, "the red car turning at the crossroads", k=5,
                         kinds=["screen_text"])[0]
    assert (alone.start_ms, alone.end_ms) == (0, 60_000)


def test_a_slide_is_scored_as_a_whole(settings, vec):
    # a screen-text line is scored with the lines shown over the same span (its slide): a
    # one-word title alone sits close to any query naming it, read with the rest of its
    # slide it says what the slide is about
    slide = ["Enzymes", "Biological catalysts", "Lower the activation energy",
             "Sensitive to temperature and pH"]
    add_video(settings, vec, "full", [(0, 60, "screen_text", line) for line in slide])
    add_video(settings, vec, "title", [(0, 60, "screen_text", "Enzymes")])
    index_sync.sync(settings)
    q = "lock and key model of enzymes"
    found = {m.video_id: m for m in query.search(settings, q, k=5)}
    assert found["full"].kinds == ["screen_text"] and len(found["full"].segments) == 4
    whole = np.sum([vec(line) for line in slide], axis=0)
    qvec = query.query_vector(settings, vec.model, q)
    assert float(whole @ qvec) / np.linalg.norm(whole) < float(vec("Enzymes") @ qvec) - 0.1
    # the same title, once alone and once on a fuller slide: no longer the same score
    assert found["full"].score < found["title"].score - 0.1


def test_scores_rank_and_mark_weak(settings, vec):
    add_video(settings, vec, "mix", [(15 * i, 15 * i + 10, "speech", t)
                                     for i, t in enumerate(DISTRACTORS + [DECOY])])
    index_sync.sync(settings)
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
    index_sync.sync(settings)
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
    index_sync.sync(settings)
    assert_in_step(settings, m)   # c's model left out

    # delete a video: its vectors go (a deletion set until compaction)
    with session_scope(settings) as s:
        s.delete(s.get(Video, "a"))
    index_sync.sync(settings)
    assert_in_step(settings, m)
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
    index_sync.sync(settings)
    assert_in_step(settings, m)
    if settings.db_url.startswith("sqlite"):
        assert set(db_ids(settings, m).tolist()) & old   # ids were reused
    found = query.search(settings, "electricity is getting expensive so spending shrinks", k=1)
    assert found[0].text == TARGET and found[0].score > 0.5
    hits = dict(reader.search(settings, vec(TARGET), 5))
    assert max(hits.values()) > 0.99           # the new vector, not the stale one

    # a remove_video drops vectors at once; sync restores what the database still has
    index_sync.remove_video(settings, "b")
    assert not np.isin(db_ids(settings, m), reader.ids(settings)).any()
    index_sync.sync(settings, full=True)
    assert_in_step(settings, m)
    assert index_sync.rebuild(settings) == len(db_ids(settings, m))
    assert_in_step(settings, m)


def test_index_type_by_size_and_compaction(settings, vec, monkeypatch):
    monkeypatch.setattr(index_sync, "DELTA_MIN", 4)
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
    index_sync.sync(settings)
    st = reader.load(settings).state
    assert (st.main_kind, st.main_count, len(st.delta_ids)) == ("flat", 40, 0)
    add("more", 10)                       # 10 > DELTA_MIN: folded into main at once
    index_sync.sync(settings)
    st = reader.load(settings).state
    assert (st.main_kind, st.main_count, len(st.delta_ids)) == ("flat", 50, 0)
    add("big", 400)                        # past exact_max: retrained as IVF
    index_sync.sync(settings)
    st = reader.load(settings).state
    assert st.main_kind == "ivf" and st.main_count == 450
    assert_in_step(settings, vec.model)
    # exact top-10 of the database vs what the IVF returns: the same best hit
    q = noisy(1)[0]
    got = reader.search(settings, q, 10)
    with session_scope(settings) as s:
        rows = s.execute(select(Segment.id, Segment.embedding)).all()
    exact = faiss_ops.exact_search(q, np.array([r[0] for r in rows]),
                                 np.stack([np.frombuffer(r[1], np.float32) for r in rows]), 10)
    assert got[0][0] == exact[0][0]
    assert len({i for i, _ in got} & {i for i, _ in exact}) >= 8
    with session_scope(settings) as s:     # shrink well below exact_max: back to flat
        s.delete(s.get(Video, "big"))
    index_sync.sync(settings)
    st = reader.load(settings).state
    assert (st.main_kind, st.main_count, len(st.deleted)) == ("flat", 50, 0)
    assert not list(settings.home.glob(".*tmp*"))      # no temp file left behind


def test_a_video_with_times_beyond_int32_does_not_break_the_index(settings, vec):
    """A stored time past the int32 range (30 days in ms) is a bad video, not a reason for
    the shared index to fail: sync (incremental and full) and rebuild succeed, the bad
    rows' times are clamped in the attrs, and the other videos are still found."""
    add_video(settings, vec, "good", [(0, 5, "speech", DECOY), (20, 25, "speech", TARGET)])
    index_sync.sync(settings)                         # the index exists: next sync is cheap
    far = 2_592_000_000
    with session_scope(settings) as s:
        s.add(Video(id="bad", filename="bad.mp4", path="/dev/null", status="ready", notes=[]))
        s.flush()
        s.add_all(Segment(video_id="bad", chunk_idx=0, kind="speech", start_ms=far + i,
                          end_ms=far + i + 5_000, text=t, model_id="test",
                          embedding=vec(t).tobytes(), embed_model=vec.model)
                  for i, t in enumerate(DISTRACTORS[:3]))
    index_sync.sync(settings)
    for step in (lambda: None, lambda: index_sync.sync(settings, full=True),
                 lambda: index_sync.rebuild(settings)):
        step()
        assert np.array_equal(reader.ids(settings), db_ids(settings, vec.model))
        loaded = reader.load(settings)
        attrs = Attrs.concat([loaded.lay.attrs, loaded.state.delta_attrs])
        assert attrs.start.max() == attrs.end.max() == np.iinfo(np.int32).max
        found = query.search(settings, QUERY, k=1, video_ids=["good"], start_ms=15_000)
        assert [(m.video_id, m.text) for m in found] == [("good", TARGET)]
        assert query.search(settings, QUERY, k=1)[0].text == DECOY


def test_torn_write_is_detected_and_rebuilt(sqlite_settings, vec):
    settings = sqlite_settings
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY)])
    index_sync.sync(settings)
    state_path = index_state.state_path(settings)
    stale = state_path.read_bytes()
    add_video(settings, vec, "b", [(0, 5, "speech", TARGET)])
    index_sync.rebuild(settings)
    state_path.write_bytes(stale)   # a crash between the main file's rename and the state's
    index_sync.sync(settings)
    assert_in_step(settings, vec.model)


def test_an_index_an_older_version_wrote_is_rebuilt_by_reconcile(sqlite_settings, vec):
    """Before filters were evaluated in the index there was no attrs file and the state had
    fewer fields: such an index serves nothing (rather than unfiltered results) until the
    workers' periodic reconcile rebuilds it."""
    from workers import flow
    from workers.celery_app import app
    settings = sqlite_settings
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY), (20, 25, "speech", TARGET)])
    index_sync.sync(settings)
    index_state.attrs_path(settings).unlink()
    state = index_state.state_path(settings)
    with np.load(state) as z:
        meta = json.loads(z["meta"].tobytes())
        old = {k: meta[k] for k in ("model", "dim", "main_stat", "main_kind", "main_count",
                                    "trained_for", "hwm")}
        old["videos"] = {v: {k: r[k] for k in ("stamp", "sig", "runs")}
                         for v, r in meta["videos"].items()}
        arrays = {k: z[k] for k in ("delta_ids", "delta_vecs", "deleted")}
    with open(state, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(old).encode(), np.uint8), **arrays)
    reader._cache.clear()
    assert reader.load(settings) is None
    flow.reconcile(settings, app)
    assert_in_step(settings, vec.model)
    found = query.search(settings, QUERY, k=1, start_ms=15_000, mode="vector")
    assert found[0].text == TARGET


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
    index_sync.sync(settings)


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
    index_sync.sync(settings)
    assert_in_step(settings, vec.model)
    assert len(reader.ids(settings)) == 100
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Video)) == 4
    assert os.path.exists(settings.faiss_path)


def test_video_and_tenant_filters_are_evaluated_in_the_index(settings, vec, monkeypatch):
    """A tenant or video filter reaches the index as a set of videos (no segment id read from
    the database), and a tenant that owns every indexed video searches it unrestricted."""
    monkeypatch.setattr(query, "EXACT_CANDIDATES", 0)
    add_video(settings, vec, "mine1", [(0, 5, "speech", DECOY), (6, 9, "speech", DISTRACTORS[0])])
    add_video(settings, vec, "mine2", [(0, 5, "speech", TARGET)])
    add_video(settings, vec, "theirs", [(0, 5, "speech", DECOY)], tenant="other")
    index_sync.sync(settings)
    seen = []
    real = reader.search
    monkeypatch.setattr(reader, "search", lambda st, q, n, flt=None: (
        seen.append(flt), real(st, q, n, flt))[1])

    found = query.search(settings, QUERY, tenant="other", k=5)
    assert [m.video_id for m in found] == ["theirs"] and seen[-1].videos == {"theirs"}
    found = query.search(settings, QUERY, tenant="default", k=5)
    assert {m.video_id for m in found} == {"mine1", "mine2"}
    assert seen[-1].videos == {"mine1", "mine2"}
    found = query.search(settings, QUERY, video_ids=["mine2"], tenant="default", k=5)
    assert [m.video_id for m in found] == ["mine2"] and seen[-1].videos == {"mine2"}
    assert query.search(settings, QUERY, video_ids=["theirs"], tenant="default", k=5) == []

    with session_scope(settings) as s:      # one tenant left: it owns the whole index
        s.delete(s.get(Video, "theirs"))
    index_sync.sync(settings)
    found = query.search(settings, QUERY, tenant="default", k=5)
    assert {m.video_id for m in found} == {"mine1", "mine2"}
    assert match(seen[-1], reader.load(settings).state).video_ok is None


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_filters_in_the_index_give_what_exact_search_gives(sqlite_settings, vec, kind,
                                                           monkeypatch):
    """Random times, kinds and videos, some vectors deleted and some in the delta: a filtered
    search returns exactly the filtered exact top-k (flat), or with every list probed the
    same set up to 8-bit ties (IVF); and with few lists probed, the probed lists' vectors
    that pass the filter are exactly those FAISS scans (the same as a selector over every
    passing id)."""
    settings = sqlite_settings
    monkeypatch.setattr(index_sync, "DELTA_MIN", 10_000)       # keep the delta a delta
    if kind == "ivf":
        settings.search.exact_max = 100
    rng = np.random.default_rng(3)
    base = np.stack([vec(t) for t in DISTRACTORS])

    def add(video_id, n, tenant="default"):
        x = base[rng.integers(0, len(base), n)] + rng.standard_normal((n, 384)) / 20
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        start = rng.integers(0, 3600, n) * 1000
        with session_scope(settings) as s:
            s.add(Video(id=video_id, tenant=tenant, filename="x", path="/dev/null",
                        status="ready", notes=[]))
            s.flush()
            s.add_all(Segment(video_id=video_id, chunk_idx=0, kind=KINDS[rng.integers(3)],
                              start_ms=int(a), end_ms=int(a + rng.integers(1000, 30_000)),
                              text="x", model_id="t", embedding=v.tobytes(),
                              embed_model=vec.model) for a, v in zip(start, x))

    for v in range(8):
        add(f"v{v}", 80)
    index_sync.sync(settings)
    with session_scope(settings) as s:
        s.delete(s.get(Video, "v3"))
    add("v8", 40)
    index_sync.sync(settings)
    st = reader.load(settings).state
    assert st.main_kind == kind and len(st.deleted) == 80 and len(st.delta_ids) == 40
    assert_in_step(settings, vec.model)
    with session_scope(settings) as s:
        rows = s.execute(select(Segment.id, Segment.video_id, Segment.start_ms, Segment.end_ms,
                                Segment.kind, Segment.embedding)).all()

    def passes(r, f):
        return ((f.videos is None or r.video_id in f.videos)
                and (f.start_ms is None or r.end_ms > f.start_ms)
                and (f.end_ms is None or r.start_ms < f.end_ms)
                and (f.kinds is None or r.kind in f.kinds))

    filters = [Filter(start_ms=600_000, end_ms=900_000),
               Filter(kinds=("screen_text",)),
               Filter(videos=frozenset({"v1", "v5", "v8"}), start_ms=1_000_000),
               Filter(videos=frozenset({"v3"})),                    # deleted: nothing
               Filter(videos=frozenset({"v8"}), kinds=("visual", "speech")),
               Filter(start_ms=0, end_ms=200_000, kinds=("speech",))]
    for f in filters:
        ok = [r for r in rows if passes(r, f)]
        q = base[rng.integers(len(base))]
        want = faiss_ops.exact_search(q, np.array([r.id for r in ok], np.int64),
                                    np.stack([np.frombuffer(r.embedding, np.float32) for r in ok]
                                             or [np.zeros(384, np.float32)])[:len(ok)], 10)
        got = reader.search(settings, q, 10, f)
        assert len(got) == min(10, len(ok)), f
        if kind == "flat":
            assert [i for i, _ in got] == [i for i, _ in want], f
        else:
            assert len({i for i, _ in got} & {i for i, _ in want}) >= len(want) - 1, f

    if kind == "ivf":        # few lists: what the IVF scan gives over the same lists
        loaded = reader.load(settings)
        ivf = faiss.downcast_index(loaded.main)
        probes = []
        real = faiss_ops._coarse
        monkeypatch.setattr(faiss_ops, "_coarse", lambda i, q, n: (probes.append(n),
                                                                 real(i, q, n))[1])
        for i, f in enumerate(filters[:3] * 3):
            # the probed lists' passing vectors: their codes copied and scored, or the best
            # of a plain scan of the lists kept if they pass; or every vector tested in one
            # pass (low selectivity)
            full, gather = i // 3 == 2, i // 3 != 1
            monkeypatch.setattr(faiss_ops, "FULL_PASS", 0.0 if full else 1.0)
            monkeypatch.setattr(faiss_ops, "GATHER_SHARE", 1.0 if gather else 0.0)
            m = match(f, loaded.state)
            q = base[rng.integers(len(base))].reshape(1, -1)
            got = faiss_ops.search_index(loaded.main, q, 10, match=m, lay=loaded.lay,
                                         deleted=loaded.state.deleted, nprobe=2, min_pass=60)
            every = loaded.lay.ids[m(loaded.lay.attrs)]
            ref = ivf.search(q, 10, params=faiss.SearchParametersIVF(
                sel=faiss_ops._and(faiss_ops._selector(every, int(every.max())), loaded.excluded),
                nprobe=ivf.nlist if full else probes[-1]))
            assert got[1].tolist() == ref[1][0][ref[1][0] >= 0].tolist(), f
            assert np.allclose(got[0], ref[0][0][ref[1][0] >= 0], atol=1e-5)
        assert max(probes) > 2           # selective filters looked further than nprobe


def test_a_repeated_query_is_embedded_once(sqlite_settings, vec, monkeypatch):
    settings = sqlite_settings
    add_video(settings, vec, "a", [(0, 5, "speech", DECOY), (30, 35, "speech", TARGET)])
    index_sync.sync(settings)
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


def test_text_coverage_meets_forms_of_one_word():
    # a plural, a tense or an -ing form of a query word counts as the word (enzymes, enzyme)
    weights = {query._stem(w): 1.0 for w in ("enzymes", "making", "cities")}
    assert query.coverage(weights, "An enzyme makes the city") == 1.0
    assert query.coverage(weights, "Enzymatic engines") == 0.0
