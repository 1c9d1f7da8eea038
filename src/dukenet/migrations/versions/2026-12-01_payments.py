"""Payments: operators' payouts of agent earnings, and deposits through a payment provider.

Revision ID: 0005_payments
Revises: 0004_acceptance
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_payments"
down_revision: str | None = "0004_acceptance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deposit",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.String(length=500), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("payment_hash", sa.String(length=128), nullable=False),
        sa.Column("payment_request", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "credited",
                "expired",
                name="deposit_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("credited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_sat > 0", name=op.f("ck_deposit_amount_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_deposit_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_deposit_payment_hash")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_deposit_user_idempotency_key"),
    )
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_user_id"), ["user_id"], unique=False)

    op.create_table(
        "payout",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("requested_by_id", sa.Uuid(), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column(
            "destination",
            sa.Enum("wallet", "external", name="payout_destination", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("destination_ref", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("payment_hash", sa.String(length=128), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "sending",
                "paid",
                "rejected",
                "failed",
                name="payout_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_sat > 0", name=op.f("ck_payout_amount_positive")),
        sa.ForeignKeyConstraint(["agent_id"], ["agent.id"], name=op.f("fk_payout_agent_id_agent")),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["user_account.id"],
            name=op.f("fk_payout_requested_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout")),
        sa.UniqueConstraint(
            "requested_by_id", "idempotency_key", name="uq_payout_requester_idempotency_key"
        ),
    )
    with op.batch_alter_table("payout", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payout_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payout_payment_hash"), ["payment_hash"], unique=False)
        batch_op.create_index("ix_payout_status_created", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payout", schema=None) as batch_op:
        batch_op.drop_index("ix_payout_status_created")
        batch_op.drop_index(batch_op.f("ix_payout_payment_hash"))
        batch_op.drop_index(batch_op.f("ix_payout_agent_id"))
    op.drop_table("payout")
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_user_id"))
    op.drop_table("deposit")
