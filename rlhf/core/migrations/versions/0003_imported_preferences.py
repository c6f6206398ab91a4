"""imported_preferences: preference pairs imported from outside the workspace.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Written out in full (no imports from rlhf.core.schema) so that later edits to the models
never change what this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('imported_preferences',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=256), nullable=False),
        sa.Column('head', sa.String(length=16), nullable=False),
        sa.Column('prompt', sa.JSON(), nullable=False),
        sa.Column('chosen', sa.Text(), nullable=False),
        sa.Column('rejected', sa.Text(), nullable=False),
        sa.Column('margin', sa.Float(), nullable=False),
        sa.Column('split', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_imported_preferences')),
        sa.UniqueConstraint('key', name=op.f('uq_imported_preferences_key'))
    )
    op.create_index(op.f('ix_imported_preferences_source'), 'imported_preferences', ['source'], unique=False)
    op.create_index(op.f('ix_imported_preferences_head'), 'imported_preferences', ['head'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_imported_preferences_head'), table_name='imported_preferences')
    op.drop_index(op.f('ix_imported_preferences_source'), table_name='imported_preferences')
    op.drop_table('imported_preferences')
