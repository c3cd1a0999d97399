"""whether a video's plan includes captions, as data

Revision ID: 0004
Revises: 0003
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The note earlier versions wrote when a video was planned without Qwen3-VL.
_SKIPPED = "visual captions skipped"


def upgrade() -> None:
    op.add_column("videos", sa.Column("captions", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    # Videos planned before this column: their notes were the only record of the plan.
    videos = sa.table("videos", sa.column("id", sa.String), sa.column("notes", sa.JSON),
                      sa.column("chunks_total", sa.Integer), sa.column("captions", sa.Boolean))
    bind = op.get_bind()
    planned = bind.execute(sa.select(videos.c.id, videos.c.notes)
                           .where(videos.c.chunks_total > 0)).all()
    captioned = [vid for vid, notes in planned
                 if not any(str(n).startswith(_SKIPPED) for n in _as_list(notes))]
    for i in range(0, len(captioned), 500):
        bind.execute(videos.update().where(videos.c.id.in_(captioned[i:i + 500]))
                     .values(captions=True))


def _as_list(notes) -> list:
    return json.loads(notes) if isinstance(notes, str) else list(notes or [])


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("captions")
