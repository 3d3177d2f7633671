"""results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:29:06.442262
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ivcontrast.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("series_version", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False, comment="contrast or no_contrast"),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("aggregation", sa.String(length=32), nullable=False),
        sa.Column("slices_used", sa.Integer(), nullable=False),
        sa.Column(
            "slice_probabilities",
            sa.JSON(),
            nullable=True,
            comment="[[z_mm, probability], ...] along the slice normal",
        ),
        sa.Column("original_contrast_agent", sa.String(length=64), nullable=True),
        sa.Column("tag_status", sa.String(length=16), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("load_seconds", sa.Float(), nullable=True),
        sa.Column("preprocess_seconds", sa.Float(), nullable=True),
        sa.Column("inference_seconds", sa.Float(), nullable=True),
        sa.Column("total_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", ivcontrast.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_results_series_id_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint(
            "series_id", "series_version", name=op.f("uq_results_series_id_series_version")
        ),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_results_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_label"), ["label"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_series_id"), ["series_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_tag_status"), ["tag_status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_tag_status"))
        batch_op.drop_index(batch_op.f("ix_results_series_id"))
        batch_op.drop_index(batch_op.f("ix_results_label"))
        batch_op.drop_index(batch_op.f("ix_results_created_at"))

    op.drop_table("results")
