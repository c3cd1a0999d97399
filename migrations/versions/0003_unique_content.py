"""one video per tenant and content

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two uploads of the same content racing each other must end as one video: both would
    # otherwise point at the one stored file, and deleting either would take it from both.
    dup = op.get_bind().execute(sa.text(
        "SELECT tenant, sha256, count(*) FROM videos WHERE sha256 IS NOT NULL "
        "GROUP BY tenant, sha256 HAVING count(*) > 1")).first()
    if dup is not None:
        raise RuntimeError(
            f"tenant {dup[0]!r} has {dup[2]} videos of the same content (sha256 {dup[1]}); "
            "delete all but one of them with the version that made them, then upgrade")
    op.create_index("uq_videos_tenant_sha256", "videos", ["tenant", "sha256"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_videos_tenant_sha256", "videos")
