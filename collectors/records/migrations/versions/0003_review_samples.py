"""Decisions sampled for review and the reviewers' labels (issue 16).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aimsguard.collectors.records._models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_samples",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("guardrail", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(80), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("content_note", sa.Text(), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("inclusion_p", sa.Float(), nullable=False),
        sa.Column("labels_wanted", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_review_samples_status_created", "review_samples", ["status", "created_at"])
    op.create_index("ix_review_samples_system_check", "review_samples", ["system", "guardrail", "created_at"])
    op.create_index("ix_review_samples_request", "review_samples", ["request_id"])
    op.create_table(
        "review_labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sample_id", sa.String(64), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("labelled_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("sample_id", "reviewer", name="uq_review_labels_sample_reviewer"),
    )
    op.create_index("ix_review_labels_labelled", "review_labels", ["labelled_at"])


def downgrade() -> None:
    op.drop_index("ix_review_labels_labelled", table_name="review_labels")
    op.drop_table("review_labels")
    op.drop_index("ix_review_samples_request", table_name="review_samples")
    op.drop_index("ix_review_samples_system_check", table_name="review_samples")
    op.drop_index("ix_review_samples_status_created", table_name="review_samples")
    op.drop_table("review_samples")
