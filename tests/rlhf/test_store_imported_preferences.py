"""Migration 0003 (imported_preferences) on SQLite and PostgreSQL: upgrade from 0002 keeps the data,
the dedup key is unique, and a downgrade removes the table again."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from rlhf.core import schema
from rlhf.core.store import Store, alembic_config


def pair(key: str = "k1") -> schema.ImportedPreference:
    return schema.ImportedPreference(key=key, source="hh", head="helpful", prompt=[{"role": "user", "content": "q"}],
                                     chosen="good", rejected="bad", margin=0.5, split="train")


def test_upgrade_from_0002_adds_imported_preferences_and_downgrade_removes_it(db_url: str) -> None:
    st = Store.open(db_url, migrate=False)
    try:
        with st.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0002")
            conn.execute(text("INSERT INTO annotators (name, role, active, simulated, created_at, session_generation) "
                              "VALUES ('old', 'annotator', true, false, CURRENT_TIMESTAMP, 0)"))
            conn.commit()
        assert "imported_preferences" not in inspect(st.engine).get_table_names()
        st.upgrade()
        assert "imported_preferences" in inspect(st.engine).get_table_names()
        with st.session() as s:
            assert s.scalars(select(schema.Annotator.name)).all() == ["old"]
            s.add(pair())
        with st.session() as s:
            row = s.scalar(select(schema.ImportedPreference))
            assert (row.prompt, row.chosen, row.margin, row.split) == ([{"role": "user", "content": "q"}], "good", 0.5,
                                                                       "train")
            assert row.created_at.tzinfo is not None
        with pytest.raises(IntegrityError), st.session() as s:
            s.add(pair())  # the same key: a re-import cannot store a pair twice
        with st.engine.connect() as conn:
            command.downgrade(alembic_config(conn), "0002")
            conn.commit()
        assert "imported_preferences" not in inspect(st.engine).get_table_names()
        st.upgrade()
        with st.session() as s:
            s.add(pair("k2"))
    finally:
        st.dispose()
