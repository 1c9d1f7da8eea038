"""Buyer acceptance, failover, retry backoff and claim timeout: escrow amount, assignment and
availability times, delivery, dispute window, rejection.

Revision ID: 0004_acceptance
Revises: 0003_feedback
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_acceptance"
down_revision: str | None = "0003_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escrow_sat", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("accept_by", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rejection_reason", sa.Text(), nullable=True))
    # Every task so far held exactly its price.
    op.execute("UPDATE task SET escrow_sat = price_sat, assigned_at = created_at")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index("ix_task_status_accept_by", ["status", "accept_by"], unique=False)
        batch_op.create_check_constraint("escrow_covers_price", "escrow_sat >= price_sat")


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_constraint("ck_task_escrow_covers_price", type_="check")
        batch_op.drop_index("ix_task_status_accept_by")
        batch_op.drop_column("rejection_reason")
        batch_op.drop_column("accept_by")
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("available_at")
        batch_op.drop_column("assigned_at")
        batch_op.drop_column("escrow_sat")
