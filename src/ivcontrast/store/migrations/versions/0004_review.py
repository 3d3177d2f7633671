"""results: the physics second opinion and the review state

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("network_label", sa.String(length=16), "the network's own call: contrast or no_contrast"),
    ("review_reasons", sa.JSON(), "why the series is in review; empty for a confident call"),
    (
        "physics_label",
        sa.String(length=16),
        "what the blood pool's HU says; null when not measured or not found",
    ),
    ("physics_hu", sa.Float(), "the blood pool's HU"),
    ("physics_structure", sa.String(length=64), None),
    ("physics", sa.JSON(), "the physics opinion: structure, HU, slice, position, reason"),
    ("physics_seconds", sa.Float(), None),
)


def upgrade() -> None:
    # batch mode: SQLite cannot alter a column comment in place; PostgreSQL runs it directly.
    with op.batch_alter_table("results") as batch:
        for name, kind, comment in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True, comment=comment))
        batch.alter_column(
            "label",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment="contrast, no_contrast or review",
            existing_comment="contrast or no_contrast",
        )
    # Calls made before this revision were the network's alone.
    op.execute("UPDATE results SET network_label = label, review_reasons = '[]'")


def downgrade() -> None:
    op.execute("UPDATE results SET label = network_label WHERE label = 'review'")
    with op.batch_alter_table("results") as batch:
        for name, _, _ in reversed(_COLUMNS):
            batch.drop_column(name)
        batch.alter_column(
            "label",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment="contrast or no_contrast",
            existing_comment="contrast, no_contrast or review",
        )
