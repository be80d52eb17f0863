"""Shadow runs and replays recorded as evidence for a policy change (issue 16).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aimsguard.collectors.records._models import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_evidence",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("candidate_version", sa.String(80), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ix_policy_evidence_version", "policy_evidence", ["candidate_version"])


def downgrade() -> None:
    op.drop_index("ix_policy_evidence_version", table_name="policy_evidence")
    op.drop_table("policy_evidence")
