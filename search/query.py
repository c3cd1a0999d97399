"""Moment search: vectors and full text fused by reciprocal rank, the visual space beside
them, neighbouring hits of one video merged into moments.

Retrieval. The query is embedded once. Vector hits: the filters go into the FAISS search
itself (`search.index.reader.search` with a `Filter`: the index keeps each vector's video,
time and kind beside it, so no segment id is read from the database; the video and tenant
filters become the set of allowed videos, read from the videos table). When the index is
an 8-bit IVF and the allowed videos hold at most EXACT_CANDIDATES vectors, they are scored
exactly from their stored float32 embeddings instead: exact beats 8-bit there. Text hits:
Postgres full-text search (`tsv @@ to_tsquery`, any query word, ranked by ts_rank_cd) or
SQLite FTS5 (bm25), the same filters in the same SQL statement (`store.search_rows`). A
text hit stays in the fused list only when its text holds at least TEXT_MIN_COVER (40%) of
the query's IDF weight (document frequencies from the same full-text index): one shared
common word does not make a match.

Fusion. Reciprocal rank fusion of the two lists, rrf = sum 1 / (60 + rank), normalised to
1 for a segment ranked first in both. A screen-text segment's cosine is its slide's: the
normalised sum of the lines shown over the same span, so a one-word title is read with the
rest of its slide rather than alone. A segment's relevance is
    relevance = cosine + RRF_WEIGHT * rrf_norm          (RRF_WEIGHT = 0.3)
so the cosine orders what the lists agree on and the fused rank lifts what both retrievers
found. On bench/evalset this orders better than the cosine alone or plain RRF (see
bench/RESULTS.md); R@1 is flat for RRF_WEIGHT from 0.15 to 1.

Score (0..1): the estimated probability that a moment is what was asked for,
    score = 1 / (1 + exp(-(A + B * relevance)))
of its best segment, with A and B fitted by logistic regression on the public evaluation
set (bench/search_quality.py --calibrate; label: the moment overlaps a truth window). The
map is monotone, so fitting it changes no ranking. all-MiniLM-L6-v2 puts unrelated text
near cosine 0.1 and a paraphrase of the same fact around 0.5-0.7; a score of 0.5 sits near
relevance 0.5. A moment under settings.search.weak_score (0.35) is marked weak: probably no
good match, which is a real answer. Moments are ordered by score. (In the evaluation-only
modes 'vector' and 'text' the relevance is the one retriever's own: the cosine, or the
normalised text rank; their scores are not calibrated.)

Moments. Segments are taken best first; one joins a moment of the same video when it lies
within settings.search.merge_gap_s of it, is nearly as good (score at least MERGE_RATIO of
the moment's best) and is not much longer than the moment's best segment, so a moment grows
over a phrase split across segments but neither over the unrelated lines next to it nor to
the minute a slide stays on screen around the sentence that answers. What is left out comes
back as moments of its own only when fewer than k were found. Screen text joins a moment of
screen text only when on screen at the same time (not the adjacent slide or clock reading). A
moment's bounds are those of its segments, except screen text far longer than the speech
that joined it: a slide shown for a minute lends the moment its text, the sentence said
with it gives the time. Each moment carries the keyframe thumbnail of the
shot that holds its best segment (`search.thumbnails`).

The visual space (keyframe embeddings, `search.visual`). A text query is also embedded by
the image-text model's text tower and searched there; its hits are scored by that model's
calibrated probability of a match (SigLIP's own sigmoid) and join the same list of scored
segments, so a moment's score is the best calibrated probability of its segments, whichever
space found them: "weak" still means probably not there. Nothing changes where the space is
empty. An image, or `like` (a video and a time: the keyframe embedding stored there),
searches the visual space only.
"""

import logging
import math
import re
import threading
from collections import OrderedDict

import numpy as np

from core.config import Settings
from core.errors import BadQuery
from core.times import check_range
from core.types import KINDS, MAX_RESULTS, SCREEN_TEXT
from search import thumbnails, visual
from search.moments import Moment, moments
from search.index import reader
from search.index.faiss_ops import exact_search
from search.index.filters import Filter
from store import search_rows
from store.db import session_scope
from store.search_rows import Filters

log = logging.getLogger(__name__)

RRF_K = 60
RRF_WEIGHT = 0.3
TEXT_MIN_COVER = 0.4
DF_CAP = 10_000             # document frequencies are counted up to here (bounded cost)
EXACT_CANDIDATES = 8192     # a video filter up to this many vectors: scored exactly
MAX_K = MAX_RESULTS
RECENT_QUERIES = 256        # query vectors kept (a few hundred KB)
MAX_TERMS = 24
# Logistic calibration of the score (see the module docstring and bench/search_quality.py).
A, B = -5.9, 9.4               # fitted: bench/search_quality.py --calibrate
MODES = ("hybrid", "vector", "text")
STOPWORDS = frozenset("""
a about above after again all am an and any are as at be been before being below between
both but by can could did do does doing down during each few for from further had has have
having he her here hers him his how i if in into is it its itself just me more most my no
nor not now of off on once only or other our out over own same she should so some such than
that the their them then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours
anything something someone somebody thing things talk talks talked talking say says said
mention mentions mentioned moment part bit show shows shown video clip where's when's
""".split())


_recent: OrderedDict = OrderedDict()
_recent_lock = threading.Lock()


def validate(query: str, start_ms, end_ms, kinds, k, *, examples: int = 0) -> None:
    """`examples`: how many of an image and a `like` moment were given besides the text."""
    if examples > 1 or (examples and query):
        raise BadQuery("search by words, by an image or like a moment: one of them")
    if not examples and (not isinstance(query, str) or not query.strip()):
        raise BadQuery("the query is empty")
    check_range(start_ms, end_ms)
    for kind in kinds or []:
        if kind not in KINDS:
            raise BadQuery(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise BadQuery(f"k must be an integer from 1 to {MAX_K}")


def search(settings: Settings, query: str = "", *, video_ids: list[str] | None = None,
           start_ms: int | None = None, end_ms: int | None = None,
           kinds: list[str] | None = None, k: int = 10, tenant: str | None = None,
           mode: str = "hybrid", image=None, like: tuple[str, int] | None = None
           ) -> list[Moment]:
    """The k best moments for a natural-language query, best first; or, with `image` (a PIL
    image or an RGB array) or `like` ((video id, t_ms): more like that moment), the moments
    that look most like it. `mode` 'vector' or 'text' uses one retriever alone (for
    evaluation)."""
    validate(query, start_ms, end_ms, kinds, k,
             examples=(image is not None) + (like is not None))
    if mode not in MODES:
        raise BadQuery(f"unknown mode {mode!r}")
    f = Filters(tuple(video_ids) if video_ids else None, start_ms, end_ms,
                tuple(dict.fromkeys(kinds)) if kinds else None, tenant)
    pool = max(50, 5 * k)
    if image is not None or like is not None:
        qvec, calibration = visual.query_vector(settings, image=image, like=like, tenant=tenant)
        found = visual.hits(settings, qvec, pool, f)
        rows = {r.id: r for r in _rows(settings, [i for i, _ in found])}
        scored = visual.scored(settings, found, rows, calibration)
        return _with_thumbnails(settings, moments(scored, settings, k))
    scored = _text_scored(settings, query, f, pool, mode)
    if mode == "hybrid" and (seen := visual.query_vector(settings, text=query)) is not None:
        found = visual.hits(settings, seen[0], pool, f)
        rows = {r.id: r for r in _rows(settings, [i for i, _ in found])}
        scored += visual.scored(settings, found, rows, seen[1])
    return _with_thumbnails(settings, moments(scored, settings, k))


def _with_thumbnails(settings: Settings, found: list[Moment]) -> list[Moment]:
    thumbnails.attach(settings, found)
    return found


def _text_scored(settings: Settings, query: str, f: Filters, pool: int, mode: str
                 ) -> list[tuple]:
    """The text space and full text, fused: (row, score, fused rank value) per segment."""
    from model import embed
    model = embed.model_id(settings)
    qvec = query_vector(settings, model, query)
    vec_hits = vector_hits(settings, qvec, pool, f, model) if mode != "text" else []
    text_hits = text_search(settings, query, pool, f) if mode != "vector" else []
    rows = {r.id: r for r in _rows(settings, list(dict.fromkeys(
        [i for i, _ in vec_hits] + text_hits)))}
    if mode == "hybrid" and text_hits:
        weights = term_weights(settings, query)
        text_hits = [i for i in text_hits if i in rows and
                     coverage(weights, rows[i].text) >= TEXT_MIN_COVER]
    fused: dict[int, float] = {}
    for hits in ([i for i, _ in vec_hits], text_hits):
        for rank, seg_id in enumerate(hits):
            fused[seg_id] = fused.get(seg_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    scored = []
    slides = _slide_cosines(settings, rows.values(), qvec, model)
    for seg_id, value in fused.items():
        r = rows.get(seg_id)
        if r is None:
            continue              # deleted since the index saw it
        cos = slides.get((r.video_id, r.start_ms, r.end_ms)) if r.kind == SCREEN_TEXT else None
        cos = _cosine(r, qvec, model) if cos is None else cos
        rrf_norm = value * (RRF_K + 1) / 2
        rel = {"hybrid": cos + RRF_WEIGHT * rrf_norm, "vector": cos, "text": rrf_norm}[mode]
        scored.append((r, score(rel), value))
    return scored


def _slide_cosines(settings: Settings, rows, qvec: np.ndarray, model: str
                   ) -> dict[tuple, float]:
    """Cosine of the query with each slide that holds one of the screen-text rows: the sum
    of the lines shown over the same span, normalised. A slide is read as a whole; a
    one-word title scored alone sits close to any query that names it."""
    spans = list({(r.video_id, r.start_ms, r.end_ms) for r in rows if r.kind == SCREEN_TEXT})
    if not spans:
        return {}
    with session_scope(settings) as s:
        lines = search_rows.screen_text_embeddings(s, spans=spans, model=model)
    sums: dict[tuple, np.ndarray] = {}
    for video_id, start, end, emb in lines:
        vec = np.frombuffer(emb, np.float32)
        if vec.shape == qvec.shape:
            key = (video_id, start, end)
            sums[key] = sums[key] + vec if key in sums else vec.copy()
    return {key: float(np.clip(v @ qvec / max(float(np.linalg.norm(v)), 1e-9), -1.0, 1.0))
            for key, v in sums.items()}


def query_vector(settings: Settings, model: str, query: str) -> np.ndarray:
    """The query's unit vector. Recent ones are kept: the same words come back as a user
    pages or changes filters, and embedding them is most of a search's time on a CPU."""
    from model import embed
    key = (model, query)
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key]
    vec = embed.embed([query], kind="query", settings=settings)[0]
    vec.setflags(write=False)
    with _recent_lock:
        _recent[key] = vec
        while len(_recent) > RECENT_QUERIES:
            _recent.popitem(last=False)
    return vec


def score(relevance: float) -> float:
    return 1.0 / (1.0 + math.exp(-(A + B * relevance)))


def _cosine(row, qvec: np.ndarray, model: str) -> float:
    if row.embedding is None or row.embed_model != model:
        return 0.0
    vec = np.frombuffer(row.embedding, np.float32)
    return float(np.clip(vec @ qvec, -1.0, 1.0)) if vec.shape == qvec.shape else 0.0


def vector_hits(settings: Settings, qvec: np.ndarray, n: int, f: Filters, model: str
                ) -> list[tuple[int, float]]:
    """(segment id, cosine) best first, restricted to the filters inside retrieval."""
    indexed = reader.indexed_model(settings)
    if indexed != model:
        if indexed:
            log.warning("the vector index holds %s vectors but queries use %s: run "
                        "`chronoscope reembed`; text matches only until then",
                        indexed, model)
        return []
    if not f.any:
        return reader.search(settings, qvec, n)
    videos = None
    if f.video_ids is not None or f.tenant is not None:
        with session_scope(settings) as s:
            videos = search_rows.allowed_videos(s, where=f)
    if (videos is not None and reader.approximate(settings)
            and reader.count_of_videos(settings, videos) <= EXACT_CANDIDATES):
        # A few videos under an 8-bit IVF: their float32 embeddings, scored exactly.
        with session_scope(settings) as s:
            rows = search_rows.embeddings(s, model=model, where=f)
        return _exact(qvec, rows, n)
    flt = Filter(videos, f.start_ms, f.end_ms, f.kinds)
    return reader.search(settings, qvec, n, flt)


def _exact(qvec: np.ndarray, rows, n: int) -> list[tuple[int, float]]:
    rows = [r for r in rows if len(r[1]) == 4 * len(qvec)]
    if not rows:
        return []
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)
    return exact_search(qvec, ids, vecs, n)


def _words(text_: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text_.lower())


def _stem(word: str) -> str:
    """A light suffix stripper, enough to match plural and tense variants of one word."""
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: len(word) - len(suffix)] + repl
            break
    # a final e goes too, so enzyme, enzymes and make, making meet
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _terms(query: str) -> list[str]:
    return [w for w in dict.fromkeys(_words(query)) if w not in STOPWORDS][:MAX_TERMS]


def term_weights(settings: Settings, query: str) -> dict[str, float]:
    """IDF of each content word of the query (stemmed), from the full-text index."""
    words = _terms(query)
    if not words:
        return {}
    with session_scope(settings) as s:
        n = search_rows.max_segment_id(s)
        out = {}
        for w in words:
            df = search_rows.doc_frequency(s, word=w, cap=DF_CAP)
            stem = _stem(w)
            out[stem] = max(out.get(stem, 0.0), math.log(1 + (n + 1) / (df + 1)))
    return out


def coverage(weights: dict[str, float], text_: str) -> float:
    """Share of the query's IDF weight whose words the text contains."""
    total = sum(weights.values())
    if not total:
        return 0.0
    have = {_stem(w) for w in _words(text_)}
    return sum(v for t, v in weights.items() if t in have) / total


def text_search(settings: Settings, query: str, n: int, f: Filters) -> list[int]:
    """Segment ids matching any content word of the query, best first, filters applied in
    the same statement."""
    words = _terms(query)
    if not words:
        return []
    with session_scope(settings) as s:
        return search_rows.text_matches(s, words=words, limit=n, where=f)


def _rows(settings: Settings, ids: list[int]):
    with session_scope(settings) as s:
        return search_rows.segments_by_id(s, ids=ids)
