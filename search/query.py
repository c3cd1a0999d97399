"""Moment search: FAISS vectors and full text fused by reciprocal rank, neighbouring hits
of one video merged into moments.

Score: the cosine similarity between the query and the moment's best segment, mapped
linearly from [0.15, 0.75] to [0, 1] (MiniLM puts unrelated text near 0.1 and paraphrases
above 0.6), plus 0.1 when the moment also matches the query's words. A moment under
settings.search.weak_score (0.35, about cosine 0.33) is marked weak: probably no good match.
"""

import re
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select, text

from core.config import Settings
from core.errors import BadQuery
from core.types import KINDS
from search import vectors
from store.db import get_engine, session_scope
from store.schema import Segment, Video

RRF_K = 60
COS_LOW, COS_HIGH, TEXT_BONUS = 0.15, 0.75, 0.1
REL_FLOOR = 0.15
STOPWORDS = frozenset(
    "a an and are as at be by for from has he her his i in is it its of on or she that the "
    "their there they this to was were what when where which who will with you".split())


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
        return {"video_id": self.video_id, "start": self.start_ms / 1000,
                "end": self.end_ms / 1000, "score": round(self.score, 3), "weak": self.weak,
                "kinds": self.kinds, "text": self.text,
                "segments": [{**s, "start": s["start_ms"] / 1000, "end": s["end_ms"] / 1000}
                             for s in self.segments]}


def validate(query: str, start_ms, end_ms, kinds, k) -> None:
    if not query or not query.strip():
        raise BadQuery("the query is empty")
    if (start_ms is not None and start_ms < 0) or (end_ms is not None and end_ms < 0):
        raise BadQuery("times must be >= 0")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise BadQuery(f"the time range is empty: start {start_ms / 1000} s is not before "
                       f"end {end_ms / 1000} s")
    for kind in kinds or []:
        if kind not in KINDS:
            raise BadQuery(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if not 1 <= k <= 1000:
        raise BadQuery("k must be between 1 and 1000")


def _filters(stmt, *, video_ids, start_ms, end_ms, kinds, tenant):
    if video_ids:
        stmt = stmt.where(Segment.video_id.in_(video_ids))
    if start_ms is not None:
        stmt = stmt.where(Segment.end_ms > start_ms)
    if end_ms is not None:
        stmt = stmt.where(Segment.start_ms < end_ms)
    if kinds:
        stmt = stmt.where(Segment.kind.in_(kinds))
    if tenant is not None:
        stmt = stmt.join(Video, Video.id == Segment.video_id).where(Video.tenant == tenant)
    return stmt


def _text_hits(settings: Settings, query: str, n: int, filters: dict) -> list[int]:
    words = [w for w in re.findall(r"\w+", query.lower()) if w not in STOPWORDS]
    if not words:
        return []
    engine = get_engine(settings)
    allowed = _filters(select(Segment.id), **filters)
    with session_scope(settings) as s:
        if engine.dialect.name == "postgresql":
            tsq = " | ".join(words)   # any word may match; ranking rewards more of them
            rank = text("ts_rank_cd(segments.tsv, to_tsquery('english', :q))")
            stmt = allowed.where(text("segments.tsv @@ to_tsquery('english', :q)")) \
                .order_by(rank.desc()).limit(n)
            return list(s.scalars(stmt, {"q": tsq}))
        match = " OR ".join(f'"{w}"' for w in words)
        rows = s.execute(text("SELECT rowid FROM segments_fts WHERE segments_fts MATCH :q "
                              "ORDER BY rank LIMIT :n"), {"q": match, "n": n * 20}).scalars().all()
        if not rows:
            return []
        keep = set(s.scalars(allowed.where(Segment.id.in_(rows))))
        return [r for r in rows if r in keep][:n]


def _candidates(settings: Settings, filters: dict) -> np.ndarray | None:
    if not any(v for v in filters.values() if v is not None):
        return None
    with session_scope(settings) as s:
        return np.asarray(s.scalars(_filters(select(Segment.id), **filters)).all(), np.int64)


def search(settings: Settings, query: str, *, video_ids: list[str] | None = None,
           start_ms: int | None = None, end_ms: int | None = None,
           kinds: list[str] | None = None, k: int = 10, tenant: str | None = None
           ) -> list[Moment]:
    from model import embed
    validate(query, start_ms, end_ms, kinds, k)
    filters = dict(video_ids=video_ids, start_ms=start_ms, end_ms=end_ms, kinds=kinds,
                   tenant=tenant)
    n = max(50, 5 * k)
    qvec = embed.embed([query], kind="query", settings=settings)[0]
    # A vector "hit" far below the best one (or under the absolute floor) is just the nearest
    # of unrelated text: leave it out, so it neither fills the list nor glues real hits
    # together into one long moment (a timer's every second, say).
    found = vectors.search(settings, qvec, n, _candidates(settings, filters))
    floor = max(COS_LOW, found[0][1] - REL_FLOOR) if found else COS_LOW
    vec_hits = [i for i, cos in found if cos >= floor]
    text_hits = _text_hits(settings, query, n, filters)
    fused: dict[int, float] = {}
    for hits in (vec_hits, text_hits):
        for rank, sid in enumerate(hits):
            fused[sid] = fused.get(sid, 0.0) + 1.0 / (RRF_K + rank + 1)
    if not fused:
        return []
    with session_scope(settings) as s:
        rows = s.scalars(select(Segment).where(Segment.id.in_(list(fused)))).all()
    moments = _moments(rows, fused, set(text_hits), qvec, settings)
    return moments[:k]


def _moments(rows, fused: dict[int, float], text_ids: set[int], qvec: np.ndarray,
             settings: Settings) -> list[Moment]:
    gap = round(settings.search.merge_gap_s * 1000)
    by_video: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r.video_id, r.start_ms)):
        by_video.setdefault(r.video_id, []).append(r)
    out = []
    for video_id, segs in by_video.items():
        group = [segs[0]]
        for r in segs[1:] + [None]:
            if r is not None and r.start_ms - max(g.end_ms for g in group) <= gap:
                group.append(r)
                continue
            out.append(_moment(video_id, group, fused, text_ids, qvec, settings))
            group = [r]
    out.sort(key=lambda m: (-m.score, -m.segments[0]["rrf"], m.video_id, m.start_ms))
    for m in out:
        for seg in m.segments:
            seg.pop("rrf")
    return out


def _moment(video_id, group, fused, text_ids, qvec, settings) -> Moment:
    cos = [float(np.frombuffer(r.embedding, np.float32) @ qvec) if r.embedding else 0.0
           for r in group]
    score = (max(cos) - COS_LOW) / (COS_HIGH - COS_LOW)
    if any(r.id in text_ids for r in group):
        score += TEXT_BONUS
    score = float(np.clip(score, 0.0, 1.0))
    best = max(range(len(group)), key=lambda i: (fused[group[i].id], cos[i]))
    ordered = sorted(group, key=lambda r: -fused[r.id])
    return Moment(
        video_id=video_id, start_ms=min(r.start_ms for r in group),
        end_ms=max(r.end_ms for r in group), score=round(score, 4),
        weak=score < settings.search.weak_score,
        kinds=sorted({r.kind for r in group}), text=group[best].text,
        segments=[{"id": r.id, "start_ms": r.start_ms, "end_ms": r.end_ms, "kind": r.kind,
                   "text": r.text, "rrf": fused[r.id]} for r in ordered])
