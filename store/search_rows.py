"""What moment search reads of the database: the videos a filter allows, the stored
embeddings of a few videos, full-text matches and document frequencies, and segment rows.
Plain queries with keyword-only arguments; the caller owns the transaction.

Full text differs by database: Postgres matches `segments.tsv` with to_tsquery and ranks
by ts_rank_cd; SQLite matches the FTS5 table `segments_fts` (porter-stemmed) and ranks by
bm25. Both take the same filters in the same statement."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import column, func, select, table, text, tuple_
from sqlalchemy.orm import Session

from core.types import SCREEN_TEXT
from store.schema import Segment, Video

ROWS_PER_QUERY = 900         # ids per IN (...): under SQLite's bound-parameter limit


@dataclass(frozen=True)
class Filters:
    """What a search is restricted to; None: no restriction on that. A time range keeps
    segments overlapping [start_ms, end_ms)."""
    video_ids: tuple | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    kinds: tuple | None = None
    tenant: str | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.video_ids, self.start_ms, self.end_ms,
                                           self.kinds, self.tenant))


def _apply(stmt, f: Filters):
    """The filters as WHERE clauses on a statement over segments."""
    if f.video_ids is not None:
        stmt = stmt.where(Segment.video_id.in_(f.video_ids))
    if f.start_ms is not None:
        stmt = stmt.where(Segment.end_ms > f.start_ms)
    if f.end_ms is not None:
        stmt = stmt.where(Segment.start_ms < f.end_ms)
    if f.kinds is not None:
        stmt = stmt.where(Segment.kind.in_(f.kinds))
    if f.tenant is not None:
        stmt = stmt.join(Video, Video.id == Segment.video_id).where(Video.tenant == f.tenant)
    return stmt


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def allowed_videos(session: Session, *, where: Filters) -> frozenset[str]:
    """The ids of the videos the video and tenant filters allow."""
    stmt = select(Video.id)
    if where.video_ids is not None:
        stmt = stmt.where(Video.id.in_(where.video_ids))
    if where.tenant is not None:
        stmt = stmt.where(Video.tenant == where.tenant)
    return frozenset(session.scalars(stmt))


def embeddings(session: Session, *, model: str, where: Filters) -> Sequence:
    """(id, embedding) of the segments the filters keep that the model embedded."""
    return session.execute(_apply(select(Segment.id, Segment.embedding).where(
        Segment.embed_model == model, Segment.embedding.is_not(None)), where)).all()


def max_segment_id(session: Session) -> int:
    return session.scalar(select(func.max(Segment.id))) or 0


def doc_frequency(session: Session, *, word: str, cap: int) -> int:
    """Segments whose text holds the word (through the full-text index), counted up to
    `cap`."""
    if _postgres(session):
        sql = ("SELECT count(*) FROM (SELECT 1 FROM segments WHERE "
               "tsv @@ to_tsquery('english', :q) LIMIT :cap) AS t")
        q = word
    else:
        sql = ("SELECT count(*) FROM (SELECT 1 FROM segments_fts WHERE "
               "segments_fts MATCH :q LIMIT :cap)")
        q = f'"{word}"'
    return session.execute(text(sql), {"q": q, "cap": cap}).scalar() or 0


def text_matches(session: Session, *, words: Sequence[str], limit: int, where: Filters
                 ) -> list[int]:
    """Ids of the segments the filters keep whose text holds any of the words, best first."""
    if _postgres(session):
        q = " | ".join(words)       # any word may match; ts_rank_cd rewards more of them
        stmt = (_apply(select(Segment.id), where)
                .where(text("segments.tsv @@ to_tsquery('english', :q)"))
                .order_by(text("ts_rank_cd(segments.tsv, to_tsquery('english', :q)) DESC"),
                          Segment.id)
                .limit(limit))
        return list(session.scalars(stmt, {"q": q}))
    fts = table("segments_fts", column("rowid"), column("rank"))
    match = " OR ".join(f'"{w}"' for w in words)     # porter-stemmed by the table
    stmt = (_apply(select(Segment.id).join(fts, fts.c.rowid == Segment.id), where)
            .where(text("segments_fts MATCH :q"))
            .order_by(fts.c.rank, Segment.id).limit(limit))
    return list(session.scalars(stmt, {"q": match}))


def segments_by_id(session: Session, *, ids: Sequence[int]) -> list:
    """(id, video_id, kind, start_ms, end_ms, text, embedding, embed_model) of those ids
    that still exist."""
    out = []
    for i in range(0, len(ids), ROWS_PER_QUERY):
        out += session.execute(select(Segment.id, Segment.video_id, Segment.kind,
                                      Segment.start_ms, Segment.end_ms, Segment.text,
                                      Segment.embedding, Segment.embed_model)
                               .where(Segment.id.in_(ids[i:i + ROWS_PER_QUERY]))).all()
    return out


def screen_text_embeddings(session: Session, *, spans: Sequence[tuple[str, int, int]],
                           model: str) -> list:
    """(video_id, start_ms, end_ms, embedding) of every screen-text line of `model` shown
    over exactly one of the spans (video, start, end): the lines of one slide."""
    out = []
    per_query = ROWS_PER_QUERY // 3         # three bound parameters a span
    for i in range(0, len(spans), per_query):
        out += session.execute(select(Segment.video_id, Segment.start_ms, Segment.end_ms,
                                      Segment.embedding).where(
            tuple_(Segment.video_id, Segment.start_ms, Segment.end_ms).in_(
                spans[i:i + per_query]),
            Segment.kind == SCREEN_TEXT, Segment.embed_model == model,
            Segment.embedding.is_not(None))).all()
    return out


def visual_embedding_at(session: Session, *, video_id: str, t_ms: int, model: str
                        ) -> bytes | None:
    """The keyframe embedding (of the image-text model `model`) of the part of a shot that
    holds t_ms in the video, if one is stored."""
    return session.scalar(select(Segment.embedding).where(
        Segment.video_id == video_id, Segment.embed_model == model,
        Segment.model_id == model, Segment.embedding.is_not(None),
        Segment.start_ms <= t_ms, Segment.end_ms > t_ms)
        .order_by(Segment.start_ms.desc(), Segment.id).limit(1))
