"""the progress a run started from, so that a resumed run's ETA counts only its own pace

Revision ID: 0008
Revises: 0007

`run_from_ms` is `progress_ms` when the video's plan (re)started: the ETA divides the
seconds indexed since then by the time since `started_at`. Rows from before read 0: their
ETA is as it was.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("videos", sa.Column("run_from_ms", sa.BigInteger(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("run_from_ms")
