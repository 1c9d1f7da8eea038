"""The data flywheel: label provenance on outcomes (source, confidence, every label given) and
the evaluators buyers attach to tasks.

Revision ID: 0007_flywheel
Revises: 0006_gateway
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_flywheel"
down_revision: str | None = "0006_gateway"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LABEL_SOURCE = sa.Enum(
    "agent",
    "evaluator",
    "buyer",
    "curator",
    name="label_source",
    native_enum=False,
    length=16,
)


def upgrade() -> None:
    with op.batch_alter_table("outcome", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("label_source", LABEL_SOURCE, nullable=False, server_default="agent")
        )
        batch_op.add_column(sa.Column("label_confidence", sa.Float(), nullable=True))
    with op.batch_alter_table("outcome", schema=None) as batch_op:
        batch_op.alter_column("label_source", server_default=None)
    op.create_table(
        "outcome_label",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("source", LABEL_SOURCE, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "quality >= 0 AND quality <= 1", name=op.f("ck_outcome_label_quality_range")
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user_account.id"], name=op.f("fk_outcome_label_actor_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_outcome_label_task_id_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_label")),
    )
    with op.batch_alter_table("outcome_label", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outcome_label_task_created", ["task_id", "created_at"], unique=False
        )
    op.create_table(
        "evaluation",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "done",
                "failed",
                name="evaluation_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("judge_agent_id", sa.Uuid(), nullable=True),
        sa.Column("fee_sat", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["judge_agent_id"], ["agent.id"], name=op.f("fk_evaluation_judge_agent_id_agent")
        ),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_evaluation_task_id_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation")),
        sa.UniqueConstraint("task_id", name=op.f("uq_evaluation_task_id")),
    )


def downgrade() -> None:
    op.drop_table("evaluation")
    with op.batch_alter_table("outcome_label", schema=None) as batch_op:
        batch_op.drop_index("ix_outcome_label_task_created")
    op.drop_table("outcome_label")
    with op.batch_alter_table("outcome", schema=None) as batch_op:
        batch_op.drop_column("label_confidence")
        batch_op.drop_column("label_source")
