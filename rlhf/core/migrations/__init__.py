"""Alembic migrations of the store; `rlhf.core.store` runs them to head on every open."""
