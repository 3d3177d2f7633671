"""writebacks: what each write-back job sends where, and how it went

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:35:45.433936
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ivcontrast.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writebacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("series_version", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column(
            "destination_kind", sa.String(length=16), nullable=False, comment="folder or dicom"
        ),
        sa.Column(
            "label",
            sa.String(length=16),
            nullable=False,
            comment="the label written: contrast or no_contrast",
        ),
        sa.Column("uid_policy", sa.String(length=8), nullable=False, comment="new or keep"),
        sa.Column(
            "copies_series_uid",
            sa.String(length=64),
            nullable=True,
            comment="SeriesInstanceUID of the corrected copies; None when copies are off",
        ),
        sa.Column("report_series_uid", sa.String(length=64), nullable=True),
        sa.Column("report_sop_uid", sa.String(length=64), nullable=True),
        sa.Column("instances_total", sa.Integer(), nullable=False),
        sa.Column("instances_sent", sa.Integer(), nullable=False),
        sa.Column("report_sent", sa.Boolean(), nullable=False),
        sa.Column(
            "outcome",
            sa.String(length=16),
            nullable=True,
            comment="of the last attempt: sent, failed or superseded",
        ),
        sa.Column(
            "last_status",
            sa.String(length=8),
            nullable=True,
            comment="last DICOM status of a failed C-STORE, e.g. 0xA700",
        ),
        sa.Column(
            "failures",
            sa.JSON(),
            nullable=True,
            comment="[[SOPInstanceUID, status or reason], ...] of the last attempt",
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", ivcontrast.store.models.UTCDateTime(), nullable=False),
        sa.Column("attempted_at", ivcontrast.store.models.UTCDateTime(), nullable=True),
        sa.Column("sent_at", ivcontrast.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_writebacks_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_writebacks_result_id_results")
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_writebacks_series_id_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writebacks")),
        sa.UniqueConstraint("job_id", name=op.f("uq_writebacks_job_id")),
    )
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_writebacks_destination"), ["destination"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_writebacks_result_id"), ["result_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_writebacks_series_id"), ["series_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_writebacks_series_id"))
        batch_op.drop_index(batch_op.f("ix_writebacks_result_id"))
        batch_op.drop_index(batch_op.f("ix_writebacks_destination"))

    op.drop_table("writebacks")
