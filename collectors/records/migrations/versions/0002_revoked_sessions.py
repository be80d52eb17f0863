"""Console sessions ended by signing out, shared by every replica.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aimsguard.collectors.records._models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_revoked_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_console_revoked_sessions_expires", "console_revoked_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("console_revoked_sessions")
