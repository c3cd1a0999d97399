"""What the vector index reads of the database: per-video generation stamps and the
embedded segments of one model. Plain queries with keyword-only arguments; the caller owns
the transaction.

A row is `ROW`: (id, embedding, video_id, start_ms, end_ms, kind)."""

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.schema import Segment, Video

ROW = (Segment.id, Segment.embedding, Segment.video_id, Segment.start_ms, Segment.end_ms,
       Segment.kind)


def _embedded(model: str):
    return (Segment.embed_model == model, Segment.embedding.is_not(None))


def video_stamps(session: Session) -> dict[str, datetime | None]:
    """{video id: updated_at} of every video."""
    return dict(session.execute(select(Video.id, Video.updated_at)).all())


def videos_with_rows_above(session: Session, *, model: str, above_id: int) -> set[str]:
    """Videos with an embedded segment of the model whose id is above `above_id`."""
    return set(session.scalars(select(Segment.video_id).distinct()
                               .where(Segment.id > above_id, *_embedded(model))))


def video_rows(session: Session, *, video_id: str, model: str) -> Sequence:
    """One video's embedded rows of the model, by id."""
    return session.execute(select(*ROW).where(Segment.video_id == video_id, *_embedded(model))
                           .order_by(Segment.id)).all()


def count_embedded(session: Session, *, model: str) -> int:
    return session.scalar(select(func.count()).select_from(Segment)
                          .where(*_embedded(model))) or 0


def sample_embeddings(session: Session, *, model: str, stride: int, limit: int) -> Sequence:
    """About `limit` (id, embedding) rows of the model: every `stride`-th id (every era of
    the library, not the oldest), or the first `limit` when the ids are too sparse for the
    stride to find half of them."""
    rows = session.execute(select(Segment.id, Segment.embedding)
                           .where(*_embedded(model), Segment.id % stride == 0)).all()
    if len(rows) < limit // 2:
        rows = session.execute(select(Segment.id, Segment.embedding)
                               .where(*_embedded(model)).limit(limit)).all()
    return rows


def stream_rows(session: Session, *, model: str, batch: int) -> Iterator[Sequence]:
    """Every embedded row of the model, by id, in parts of `batch` rows."""
    stmt = select(*ROW).where(*_embedded(model)).order_by(Segment.id) \
        .execution_options(yield_per=batch)
    return session.execute(stmt).partitions(batch)


def latest_embed_model(session: Session, *, visual: bool = False) -> str | None:
    """The model of the most recently written embedded segment of the text space, or with
    visual, of the visual space (segments an image-text model both made and embedded)."""
    own = Segment.model_id == Segment.embed_model
    return session.scalar(select(Segment.embed_model).where(
        Segment.embedding.is_not(None), own if visual else ~own)
        .order_by(Segment.id.desc()).limit(1))


def _text_space():
    """Segments of the text space: embedded by the text embedder, not by the image-text
    model that made them (visual keyframes carry their own model as embed_model)."""
    return (Segment.embedding.is_not(None), Segment.model_id != Segment.embed_model)


def rows_to_reembed(session: Session, *, model: str, above_id: int, batch: int) -> Sequence:
    """Up to `batch` (id, text) rows of the text space above `above_id` not yet embedded by
    `model`, by id."""
    return session.execute(select(Segment.id, Segment.text)
                           .where(*_text_space(), Segment.embed_model != model,
                                  Segment.id > above_id)
                           .order_by(Segment.id).limit(batch)).all()


def count_to_reembed(session: Session, *, model: str) -> int:
    return session.scalar(select(func.count()).select_from(Segment)
                          .where(*_text_space(), Segment.embed_model != model)) or 0


def set_embeddings(session: Session, *, ids: Sequence[int], vectors: Sequence[bytes],
                   model: str) -> None:
    """Store each segment's new vector and the model that made it."""
    session.execute(update(Segment), [{"id": i, "embedding": v, "embed_model": model}
                                      for i, v in zip(ids, vectors, strict=True)])
