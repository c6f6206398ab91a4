"""Alembic environment of the store.

`rlhf.core.store` builds the Alembic config in code and hands over an open connection in
`config.attributes["connection"]`; the `alembic` command line also works when
`sqlalchemy.url` is given (`alembic -x` is not needed).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from rlhf.core.schema import Base

# Any constant: two processes that open a fresh PostgreSQL database at once take turns here.
_PG_MIGRATION_LOCK = 0x726C6866

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can roll back DDL too; one transaction per upgrade means a killed
        # migration leaves the old schema, never half of the new one.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        # On SQLite the store begins every transaction with BEGIN IMMEDIATE, which
        # already serializes concurrent upgrades.
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes['connection']")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
