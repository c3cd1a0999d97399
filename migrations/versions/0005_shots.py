"""shots: cut detection results with their keyframe times

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("chunk_idx", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("keyframe_ms", sa.JSON(), nullable=False),
    )
    op.create_index("ix_shots_video_time", "shots", ["video_id", "start_ms"])


def downgrade() -> None:
    op.drop_index("ix_shots_video_time", table_name="shots")
    op.drop_table("shots")
