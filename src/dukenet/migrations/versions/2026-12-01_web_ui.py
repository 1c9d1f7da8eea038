"""Web UI: an admin's password reset makes the user set a new password at next login; the
alias history records which admin moved an alias.

Revision ID: 0008_web_ui
Revises: 0007_flywheel
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_web_ui"
down_revision: str | None = "0007_flywheel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("model_alias_event") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_alias_event") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("must_change_password")
