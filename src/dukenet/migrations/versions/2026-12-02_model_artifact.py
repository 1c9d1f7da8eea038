"""Model artifacts in the database: each version's skops bytes and SHA-256, readable by every
API process on any machine (learning/serving.py fetches what its disk lacks).

Revision ID: 0014_model_artifact
Revises: 0013_local_agent
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_model_artifact"
down_revision: str | None = "0013_local_agent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_artifact",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version"],
            ["model_version.version"],
            name=op.f("fk_model_artifact_version_model_version"),
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_artifact")),
    )


def downgrade() -> None:
    op.drop_table("model_artifact")
