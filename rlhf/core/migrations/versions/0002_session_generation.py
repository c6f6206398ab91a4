"""annotators.session_generation: server-side logout.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Written out in full (no imports from rlhf.core.schema) so that later edits to the models
never change what this revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The server default fills the rows that exist already: their cookies carry no
    # generation, which session resolution reads as 0, so nobody is logged out by the upgrade.
    op.add_column(
        "annotators",
        sa.Column("session_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column in place.
    with op.batch_alter_table("annotators") as batch:
        batch.drop_column("session_generation")
