"""An index on review samples' decision time: the effectiveness gauges sum the last 30 days'
strata in the database every refresh, on every replica.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_review_samples_decided", "review_samples", ["decided_at"])


def downgrade() -> None:
    op.drop_index("ix_review_samples_decided", table_name="review_samples")
