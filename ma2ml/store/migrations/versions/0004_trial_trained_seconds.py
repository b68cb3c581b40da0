"""trials.trained_seconds: training time of a trial's earlier attempts (time budgets).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A non-null number; existing trials start at 0 (their earlier attempts are unknown)."""
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("trained_seconds", sa.Double(), nullable=False,
                                   server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("trained_seconds")
