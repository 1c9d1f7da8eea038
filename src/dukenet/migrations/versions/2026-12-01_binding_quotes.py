"""Binding quotes: the agent and price offered by POST /tasks/quote, until it expires.

Revision ID: 0011_binding_quotes
Revises: 0010_curation
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_binding_quotes"
down_revision: str | None = "0010_curation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_quote",
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("price_sat", sa.BigInteger(), nullable=False),
        sa.Column("complexity", sa.Integer(), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name=op.f("fk_task_quote_agent_id_agent")
        ),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["user_account.id"], name=op.f("fk_task_quote_buyer_id_user_account")
        ),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_task_quote_task_id_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_quote")),
    )
    with op.batch_alter_table("task_quote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_quote_buyer_id"), ["buyer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_quote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_quote_buyer_id"))
    op.drop_table("task_quote")
