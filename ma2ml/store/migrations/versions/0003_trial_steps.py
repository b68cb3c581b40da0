"""trial_steps: learning curves (one row per trial and epoch) and trials.last_step.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The curve table, its two indexes, and the trials' last reported step."""
    op.create_table(
        "trial_steps",
        sa.Column("trial_id", sa.Integer(),
                  sa.ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("step", sa.Integer(), primary_key=True),
        sa.Column("search_id", sa.Integer(),
                  sa.ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_trial_steps_search_step_value", "trial_steps",
                    ["search_id", "step", "value"])
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("last_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("last_step")
    op.drop_index("ix_trial_steps_search_step_value", table_name="trial_steps")
    op.drop_table("trial_steps")
