"""progress in seconds of video with its stage; when indexing started; when a key was used

Revision ID: 0007
Revises: 0006

`progress_ms` is how much of the video is indexed, written by the pipeline after each unit
(a signal over a chunk), so even a one-chunk video moves; `stage` is what runs now
(decode, speech, text, visual, captions, finalize; NULL when idle); `started_at` is when
its plan began, the clock of its ETA. `api_keys.last_used_at` is refreshed at most once a
minute per key (store/keys.py). Rows from before stay at 0 / NULL; ready ones read as
complete (store/serialize.py).
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("videos", sa.Column("progress_ms", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    op.add_column("videos", sa.Column("stage", sa.String(16), nullable=True))
    op.add_column("videos", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True),
                                        nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("started_at")
        batch.drop_column("stage")
        batch.drop_column("progress_ms")
