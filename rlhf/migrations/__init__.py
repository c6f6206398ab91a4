"""Alembic migrations of the store; `rlhf.store` runs them to head on every open."""
