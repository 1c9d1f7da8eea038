"""Files: uploaded files and their attachment to tasks.

Revision ID: 0002_files
Revises: 0002_accounts_tokens
Create Date: 2026-11-23 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_files"
down_revision: str | None = "0002_accounts_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "content_type",
            sa.Enum(
                "text/csv",
                "application/json",
                "text/plain",
                "application/pdf",
                "image/png",
                "image/jpeg",
                name="file_type",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_name", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user_account.id"], name=op.f("fk_file_owner_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file")),
        sa.UniqueConstraint("owner_id", "sha256", name="uq_file_owner_sha256"),
        sa.UniqueConstraint("storage_name", name=op.f("uq_file_storage_name")),
    )
    with op.batch_alter_table("file", schema=None) as batch_op:
        batch_op.create_index("ix_file_owner_created", ["owner_id", "created_at"], unique=False)

    op.create_table(
        "task_file",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["file.id"],
            name=op.f("fk_task_file_file_id_file"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task.id"],
            name=op.f("fk_task_file_task_id_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "file_id", name=op.f("pk_task_file")),
    )
    with op.batch_alter_table("task_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_file_file_id"), ["file_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_file_file_id"))

    op.drop_table("task_file")
    with op.batch_alter_table("file", schema=None) as batch_op:
        batch_op.drop_index("ix_file_owner_created")

    op.drop_table("file")
