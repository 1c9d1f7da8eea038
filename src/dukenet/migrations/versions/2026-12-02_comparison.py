"""Pairwise comparisons: two tasks answering one request, how they pay, and the pick.

Revision ID: 0012_comparison
Revises: 0011_binding_quotes
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_comparison"
down_revision: str | None = "0011_binding_quotes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "comparison",
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("sibling_task_id", sa.Uuid(), nullable=False),
        sa.Column(
            "payment",
            sa.Enum("both", "winner", name="comparison_payment", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "picked",
                "void",
                "lapsed",
                name="comparison_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "origin",
            sa.Enum("buyer", "share", name="comparison_origin", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("pick_window_s", sa.Float(), nullable=False),
        sa.Column("pick_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("winner_task_id", sa.Uuid(), nullable=True),
        sa.Column("picked_by_id", sa.Uuid(), nullable=True),
        sa.Column(
            "pick_source",
            sa.Enum(
                "agent",
                "evaluator",
                "buyer",
                "curator",
                name="comparison_pick_source",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("loser_failed", sa.Boolean(), nullable=False),
        sa.Column("picked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_transaction_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "probability > 0 AND probability <= 1", name=op.f("ck_comparison_probability_range")
        ),
        sa.CheckConstraint("task_id <> sibling_task_id", name=op.f("ck_comparison_two_tasks")),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["user_account.id"], name=op.f("fk_comparison_buyer_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["picked_by_id"],
            ["user_account.id"],
            name=op.f("fk_comparison_picked_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["sibling_task_id"], ["task.id"], name=op.f("fk_comparison_sibling_task_id_task")
        ),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_comparison_task_id_task")),
        sa.ForeignKeyConstraint(
            ["winner_task_id"], ["task.id"], name=op.f("fk_comparison_winner_task_id_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparison")),
        sa.UniqueConstraint("sibling_task_id", name=op.f("uq_comparison_sibling_task_id")),
        sa.UniqueConstraint("task_id", name=op.f("uq_comparison_task_id")),
    )
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.create_index(
            "ix_comparison_buyer_created", ["buyer_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_comparison_status_pick_by", ["status", "pick_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.drop_index("ix_comparison_status_pick_by")
        batch_op.drop_index("ix_comparison_buyer_created")

    op.drop_table("comparison")
