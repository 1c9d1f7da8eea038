"""The ``local`` agent kind and fine-tune artifacts: a training run records the model
directory it wrote and that directory's SHA-256.

``agent.kind`` is a VARCHAR(16) without a CHECK constraint, so ``local`` needs no change there.

Revision ID: 0013_local_agent
Revises: 0012_comparison
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_local_agent"
down_revision: str | None = "0012_comparison"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_path", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("artifact_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_run", schema=None) as batch_op:
        batch_op.drop_column("artifact_sha256")
        batch_op.drop_column("artifact_path")
