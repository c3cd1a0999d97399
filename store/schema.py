"""The database schema. Postgres is the source of truth, embeddings included: the FAISS file
is derived from `segments.embedding` and can be rebuilt from it at any time."""

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index,
                        Integer, LargeBinary, String, Text, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; Postgres wants BIGINT for 10M+ segments.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


# Video status: queued -> processing -> ready | failed
QUEUED, PROCESSING, READY, FAILED = "queued", "processing", "ready", "failed"


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (Index("uq_videos_tenant_sha256", "tenant", "sha256", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", index=True)
    filename: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list] = mapped_column(JSON, default=list)   # e.g. "visual captions skipped: ..."
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    video_codec: Mapped[str | None] = mapped_column(String(64))
    has_audio: Mapped[bool | None] = mapped_column()
    # Decided once, when the video is planned: whether its chunks get Qwen3-VL captions.
    # Progress and the workers read this, never the notes or the settings of the moment.
    captions: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds of video indexed (ms) and what runs now, per unit of work (migration 0007).
    progress_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stage: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # progress_ms when this run's plan began (0008): a resumed run's ETA counts only its own.
    run_from_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Chunks sent to the broker so far, in index order (workers/flow.py: the window).
    chunks_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # PyAV's name for the probed container (migration 0006): what the media is served as.
    container: Mapped[str | None] = mapped_column(String(64))
    # The in-process run that indexes it ("host:pid") and its last sign of life; NULL on
    # Celery workers (reconcile recovers those). See store/leases.py.
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class Chunk(Base):
    """One window [start_ms, end_ms) of the plan. It owns the segments that start inside it."""
    __tablename__ = "chunks"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"),
                                          primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChunkRun(Base):
    """A finished (chunk, signal, model) unit of work; what a resumed worker skips."""
    __tablename__ = "chunk_runs"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"),
                                          primary_key=True)
    chunk_idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    signal: Mapped[str] = mapped_column(String(16), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (
        Index("ix_segments_video_time", "video_id", "start_ms"),
        Index("ix_segments_unit", "video_id", "chunk_idx", "kind", "model_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    chunk_idx: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(255))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)   # float32, L2-normalised
    embed_model: Mapped[str | None] = mapped_column(String(255))


class Shot(Base):
    """A shot found by cut detection in one chunk's frames, with the times of the keyframes
    that stand for it (thumbnails and visual embeddings are made of those frames)."""
    __tablename__ = "shots"
    __table_args__ = (Index("ix_shots_video_time", "video_id", "start_ms"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    chunk_idx: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    keyframe_ms: Mapped[list] = mapped_column(JSON, default=list)   # in time order


class Summary(Base):
    """A video's overall summary (kind 'summary') and its chapters (kind 'chapter')."""
    __tablename__ = "summaries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    idx: Mapped[int] = mapped_column(Integer, default=0)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    model_id: Mapped[str] = mapped_column(String(255))


# Tenancy and webhooks (migration 0002)

class Tenant(Base):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name", ondelete="CASCADE"),
                                        index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Webhook(Base):
    """Where to announce a video's ready/failed; `notified_status` is the last one sent."""
    __tablename__ = "webhooks"
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"),
                                          primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    notified_status: Mapped[str | None] = mapped_column(String(16))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
