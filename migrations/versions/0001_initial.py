"""videos, chunks, chunk runs, segments (with embeddings and full-text index), summaries

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, server_default="default"),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("notes", sa.JSON, nullable=False),
        sa.Column("duration_ms", sa.BigInteger),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("fps", sa.Float),
        sa.Column("video_codec", sa.String(64)),
        sa.Column("has_audio", sa.Boolean),
        sa.Column("chunks_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_videos_tenant", "videos", ["tenant"])
    op.create_index("ix_videos_sha256", "videos", ["sha256"])
    op.create_index("ix_videos_status", "videos", ["status"])

    op.create_table(
        "chunks",
        sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "chunk_runs",
        sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("chunk_idx", sa.Integer, primary_key=True),
        sa.Column("signal", sa.String(16), primary_key=True),
        sa.Column("model_id", sa.String(255), primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "segments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("chunk_idx", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("embed_model", sa.String(255)),
    )
    op.create_index("ix_segments_video_time", "segments", ["video_id", "start_ms"])
    op.create_index("ix_segments_unit", "segments", ["video_id", "chunk_idx", "kind", "model_id"])

    op.create_table(
        "summaries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False, server_default="0"),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        sa.Column("model_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_summaries_video_id", "summaries", ["video_id"])

    # Full-text search over segment text: a generated tsvector with a GIN index on Postgres,
    # an external-content FTS5 table kept in step by triggers on SQLite.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED")
        op.execute("CREATE INDEX ix_segments_tsv ON segments USING gin (tsv)")
    else:
        op.execute("CREATE VIRTUAL TABLE segments_fts USING fts5("
                   "text, content='segments', content_rowid='id', tokenize='porter unicode61')")
        op.execute("CREATE TRIGGER segments_ai AFTER INSERT ON segments BEGIN "
                   "INSERT INTO segments_fts(rowid, text) VALUES (new.id, new.text); END")
        op.execute("CREATE TRIGGER segments_ad AFTER DELETE ON segments BEGIN "
                   "INSERT INTO segments_fts(segments_fts, rowid, text) "
                   "VALUES ('delete', old.id, old.text); END")
        op.execute("CREATE TRIGGER segments_au AFTER UPDATE OF text ON segments BEGIN "
                   "INSERT INTO segments_fts(segments_fts, rowid, text) "
                   "VALUES ('delete', old.id, old.text); "
                   "INSERT INTO segments_fts(rowid, text) VALUES (new.id, new.text); END")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS segments_fts")
    for table in ("summaries", "segments", "chunk_runs", "chunks", "videos"):
        op.drop_table(table)
