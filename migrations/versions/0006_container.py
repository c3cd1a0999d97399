"""the probed container of a video (what its media is served as), and who runs it in-process

Revision ID: 0006
Revises: 0005

`container` is PyAV's demuxer name from probe; rows planned before it stay NULL and the
media route probes their file once, lazily (a migration should not open every upload).
`chunks_sent` is how far the broker window has gone (workers/flow.py).
`owner` ("host:pid:start") and `heartbeat_at` name the process that indexes a video
in-process (the CLI, an embedded server), so a run that died shows as interrupted and can be
resumed (store/leases.py).
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("videos", sa.Column("container", sa.String(64), nullable=True))
    op.add_column("videos", sa.Column("chunks_sent", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.add_column("videos", sa.Column("owner", sa.String(128), nullable=True))
    op.add_column("videos", sa.Column("heartbeat_at", sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
        batch.drop_column("chunks_sent")
        batch.drop_column("container")
