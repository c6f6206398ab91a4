"""Initial schema: every table of rlhf/core/schema.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written out in full (no imports from rlhf.core.schema) so that later edits to the models
never change what this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('annotators',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('secret_hash', sa.String(length=256), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('simulated', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_annotators')),
        sa.UniqueConstraint('name', name=op.f('uq_annotators_name'))
    )

    op.create_table('models',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=256), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=True),
        sa.Column('round_iter', sa.Integer(), nullable=True),
        sa.Column('method', sa.String(length=64), nullable=True),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.Column('lineage', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['parent_id'], ['models.id'], name=op.f('fk_models_parent_id_models')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
        sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )

    op.create_table('prompts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('split', sa.String(length=16), nullable=False),
        sa.Column('messages', sa.JSON(), nullable=False),
        sa.Column('tags', sa.JSON(), nullable=False),
        sa.Column('source', sa.String(length=256), nullable=False),
        sa.Column('reference', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_prompts')),
        sa.UniqueConstraint('key', name=op.f('uq_prompts_key'))
    )
    op.create_index(op.f('ix_prompts_split'), 'prompts', ['split'], unique=False)

    op.create_table('rounds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('iter', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('current_stage', sa.String(length=32), nullable=True),
        sa.Column('incumbent_model_id', sa.Integer(), nullable=True),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['incumbent_model_id'], ['models.id'], name=op.f('fk_rounds_incumbent_model_id_models')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rounds')),
        sa.UniqueConstraint('iter', name=op.f('uq_rounds_iter'))
    )

    op.create_table('artifacts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=True),
        sa.Column('stage', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_artifacts_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_artifacts')),
        sa.UniqueConstraint('path', name=op.f('uq_artifacts_path'))
    )

    op.create_table('candidates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=False),
        sa.Column('prompt_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('sample_index', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('prompt_tokens', sa.Integer(), nullable=False),
        sa.Column('completion_tokens', sa.Integer(), nullable=False),
        sa.Column('finish_reason', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_candidates_model_id_models')),
        sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_candidates_prompt_id_prompts')),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_candidates_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_candidates')),
        sa.UniqueConstraint('round_id', 'prompt_id', 'model_id', 'sample_index', name=op.f('uq_candidates_round_id_prompt_id_model_id_sample_index'))
    )
    op.create_index(op.f('ix_candidates_round_id'), 'candidates', ['round_id'], unique=False)

    op.create_table('eval_results',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=True),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('suite', sa.String(length=64), nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_eval_results_model_id_models')),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_eval_results_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_results')),
        sa.UniqueConstraint('round_id', 'model_id', 'suite', 'metric', name=op.f('uq_eval_results_round_id_model_id_suite_metric'))
    )

    op.create_table('gate_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('checks', sa.JSON(), nullable=False),
        sa.Column('decision', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_gate_decisions_model_id_models')),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_gate_decisions_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_decisions')),
        sa.UniqueConstraint('round_id', 'model_id', name=op.f('uq_gate_decisions_round_id_model_id'))
    )

    op.create_table('stage_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=False),
        sa.Column('stage', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_stage_runs_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_runs')),
        sa.UniqueConstraint('round_id', 'stage', name=op.f('uq_stage_runs_round_id_stage'))
    )

    op.create_table('tasks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=False),
        sa.Column('prompt_id', sa.Integer(), nullable=False),
        sa.Column('candidate_ids', sa.JSON(), nullable=False),
        sa.Column('display_order', sa.JSON(), nullable=False),
        sa.Column('overlap', sa.Integer(), nullable=False),
        sa.Column('gold', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_tasks_prompt_id_prompts')),
        sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_tasks_round_id_rounds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
        sa.UniqueConstraint('round_id', 'prompt_id', name=op.f('uq_tasks_round_id_prompt_id'))
    )

    op.create_table('assignments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=False),
        sa.Column('annotator_id', sa.Integer(), nullable=False),
        sa.Column('leased_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_assignments_annotator_id_annotators')),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_assignments_task_id_tasks')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_assignments')),
        sa.UniqueConstraint('task_id', 'annotator_id', name=op.f('uq_assignments_task_id_annotator_id'))
    )
    op.create_index('ix_assignments_annotator_status', 'assignments', ['annotator_id', 'status'], unique=False)

    op.create_table('judgments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=False),
        sa.Column('annotator_id', sa.Integer(), nullable=False),
        sa.Column('ranking', sa.JSON(), nullable=False),
        sa.Column('strength', sa.String(length=32), nullable=True),
        sa.Column('unsafe', sa.JSON(), nullable=False),
        sa.Column('rationale', sa.Text(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], name=op.f('fk_judgments_annotator_id_annotators')),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_judgments_task_id_tasks')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_judgments')),
        sa.UniqueConstraint('task_id', 'annotator_id', name=op.f('uq_judgments_task_id_annotator_id'))
    )
    op.create_index(op.f('ix_judgments_task_id'), 'judgments', ['task_id'], unique=False)


def downgrade() -> None:
    # Children before parents, so foreign keys never point at a dropped table.
    op.drop_table("judgments")
    op.drop_table("assignments")
    op.drop_table("tasks")
    op.drop_table("stage_runs")
    op.drop_table("gate_decisions")
    op.drop_table("eval_results")
    op.drop_table("candidates")
    op.drop_table("artifacts")
    op.drop_table("rounds")
    op.drop_table("prompts")
    op.drop_table("models")
    op.drop_table("annotators")
