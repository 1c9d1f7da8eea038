"""Curation: curators' decisions on tasks' results (who, when, what, on which version), and
private tasks (never exported).

Revision ID: 0010_curation
Revises: 0009_task_external_id
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_curation"
down_revision: str | None = "0009_task_external_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.alter_column("private", server_default=None)
    op.create_table(
        "curation_decision",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("curator_id", sa.Uuid(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "approve",
                "ideal_response",
                "router_label",
                "discard",
                name="curation_action",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("ideal_response", sa.Text(), nullable=True),
        sa.Column("router_agent_id", sa.Uuid(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("task_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["curator_id"],
            ["user_account.id"],
            name=op.f("fk_curation_decision_curator_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["router_agent_id"],
            ["agent.id"],
            name=op.f("fk_curation_decision_router_agent_id_agent"),
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_curation_decision_task_id_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_decision")),
    )
    with op.batch_alter_table("curation_decision", schema=None) as batch_op:
        batch_op.create_index(
            "ix_curation_decision_task_created", ["task_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("curation_decision", schema=None) as batch_op:
        batch_op.drop_index("ix_curation_decision_task_created")
    op.drop_table("curation_decision")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("private")
