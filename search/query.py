"""Moment search: vectors and full text fused by reciprocal rank, neighbouring hits of one
video merged into moments.

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
1 for a segment ranked first in both. A segment's relevance is
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
moment's bounds are those of its segments.
"""

import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from core.config import Settings
from core.errors import BadQuery
from core.times import check_range, seconds
from core.types import KINDS, SCREEN_TEXT
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
MAX_K = 1000
MERGE_RATIO = 0.6
RECENT_QUERIES = 256        # query vectors kept (a few hundred KB)
MAX_TERMS = 24
# Logistic calibration of the score (see the module docstring and bench/search_quality.py).
A, B = -6.2, 9.7               # fitted: bench/search_quality.py --calibrate
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


@dataclass
class Moment:
    video_id: str
    start_ms: int
    end_ms: int
    score: float
    weak: bool
    kinds: list[str]
    text: str
    segments: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"video_id": self.video_id, "start": seconds(self.start_ms),
                "end": seconds(self.end_ms),
                "score": round(self.score, 3), "weak": self.weak, "kinds": self.kinds,
                "text": self.text,
                "segments": [{"id": g["id"], "start": seconds(g["start_ms"]),
                              "end": seconds(g["end_ms"]),
                              "kind": g["kind"], "text": g["text"], "score": g["score"]}
                             for g in self.segments]}


def validate(query: str, start_ms, end_ms, kinds, k) -> None:
    if not isinstance(query, str) or not query.strip():
        raise BadQuery("the query is empty")
    check_range(start_ms, end_ms)
    for kind in kinds or []:
        if kind not in KINDS:
            raise BadQuery(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise BadQuery(f"k must be an integer from 1 to {MAX_K}")


def search(settings: Settings, query: str, *, video_ids: list[str] | None = None,
           start_ms: int | None = None, end_ms: int | None = None,
           kinds: list[str] | None = None, k: int = 10, tenant: str | None = None,
           mode: str = "hybrid") -> list[Moment]:
    """The k best moments for a natural-language query, best first. `mode` 'vector' or
    'text' uses one retriever alone (for evaluation)."""
    validate(query, start_ms, end_ms, kinds, k)
    if mode not in MODES:
        raise BadQuery(f"unknown mode {mode!r}")
    from model import embed
    f = Filters(tuple(video_ids) if video_ids else None, start_ms, end_ms,
                tuple(dict.fromkeys(kinds)) if kinds else None, tenant)
    pool = max(50, 5 * k)
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
    for seg_id, value in fused.items():
        r = rows.get(seg_id)
        if r is None:
            continue              # deleted since the index saw it
        cos = _cosine(r, qvec, model)
        rrf_norm = value * (RRF_K + 1) / 2
        rel = {"hybrid": cos + RRF_WEIGHT * rrf_norm, "vector": cos, "text": rrf_norm}[mode]
        scored.append((r, score(rel), value))
    return moments(scored, settings, k)


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
                        "`chronoscope reindex-vectors`; text matches only until then",
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
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""),
                         ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + repl
    return word


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


def _near(row, g: dict, gap: int) -> bool:
    """Whether a segment may join a moment. Screen text joins a moment of screen text only
    when on screen with it (another line of the same slide): the next slide or the next
    reading of a clock is another text, and must not stretch the bounds of the one that
    matched. Speech, and screen text beside speech, group within the gap as before."""
    if row.kind == SCREEN_TEXT and all(t[0].kind == SCREEN_TEXT for t in g["items"]):
        return row.start_ms < g["end"] and row.end_ms > g["start"]
    return row.start_ms <= g["end"] + gap and row.end_ms >= g["start"] - gap


def _group(items: list[tuple], gap: int) -> tuple[list[dict], list[tuple]]:
    """Moments from scored segments taken best first, and the segments left out as much
    weaker neighbours of a moment."""
    groups: list[dict] = []
    dropped = []
    for item in sorted(items, key=lambda t: (-t[1], -t[2], t[0].id)):
        row, p = item[0], item[1]
        near = [g for g in groups if g["video_id"] == row.video_id and _near(row, g, gap)]
        if not near:
            groups.append({"video_id": row.video_id, "start": row.start_ms, "end": row.end_ms,
                           "best": p, "rrf": item[2], "items": [item]})
            continue
        g = near[0]
        anchor = g["items"][0][0]
        longest = max(2 * (anchor.end_ms - anchor.start_ms), anchor.end_ms - anchor.start_ms + 2 * gap)
        if p < MERGE_RATIO * g["best"] or row.end_ms - row.start_ms > longest:
            # A much weaker neighbour, or one far longer than the best segment (a slide on
            # screen for a minute around the sentence that answers): it would blur the
            # moment's bounds. Kept aside, in case fewer than k moments are found.
            dropped.append(item)
            continue
        g["items"].append(item)
        g["start"], g["end"] = min(g["start"], row.start_ms), max(g["end"], row.end_ms)
        for other in near[1:]:     # the segment bridged two moments: they become one
            if other["best"] >= MERGE_RATIO * g["best"]:
                g["items"] += other["items"]
                g["start"], g["end"] = min(g["start"], other["start"]), max(g["end"], other["end"])
                g["rrf"] = max(g["rrf"], other["rrf"])
                groups.remove(other)
    return groups, dropped


def moments(scored: list[tuple], settings: Settings, k: int) -> list[Moment]:
    """The k best moments from scored segments (row, score, fused rank value). Much weaker neighbours of a moment are left out of it; they come back as
    moments of their own only when fewer than k moments were found (a narrow filter still
    returns k results)."""
    gap = round(settings.search.merge_gap_s * 1000)
    groups, dropped = _group(scored, gap)
    if len(groups) < k and dropped:
        groups += _group(dropped, gap)[0]
    weak = settings.search.weak_score
    out = []
    order = lambda g: (-g["best"], -g["rrf"], g["video_id"], g["start"])  # noqa: E731
    for g in sorted(groups, key=order)[:k]:
        items = sorted(g["items"], key=lambda t: (t[0].start_ms, t[0].end_ms, t[0].id))
        best = float(g["best"])
        out.append(Moment(
            video_id=g["video_id"], start_ms=g["start"], end_ms=g["end"], score=best,
            weak=best < weak, kinds=sorted({t[0].kind for t in items}),
            text=" … ".join(dict.fromkeys(" ".join(t[0].text.split()) for t in items))[:500],
            segments=[{"id": t[0].id, "start_ms": t[0].start_ms, "end_ms": t[0].end_ms,
                       "kind": t[0].kind, "text": t[0].text, "score": round(float(t[1]), 4)}
                      for t in items]))
    return out
