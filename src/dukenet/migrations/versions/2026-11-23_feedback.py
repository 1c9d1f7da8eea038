"""Feedback on results: thumbs, rating, comment, correction.

Revision ID: 0003_feedback
Revises: 0002_files
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_feedback"
down_revision: str | None = "0002_files"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("result_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("thumbs_up", sa.Boolean(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_feedback_rating_range")),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["user_account.id"], name=op.f("fk_feedback_buyer_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["task_result.id"], name=op.f("fk_feedback_result_id_task_result")
        ),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_feedback_task_id_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("result_id", name=op.f("uq_feedback_result_id")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_buyer_id"), ["buyer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_task_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_buyer_id"))
    op.drop_table("feedback")
