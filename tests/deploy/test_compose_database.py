"""The database URL compose gives every rlhf service works against a real PostgreSQL server.

In compose the store belongs to the `rlhf` role (not a superuser) that owns the `rlhf`
database, and the URL carries its password. Here the same URL points at the tests'
throwaway server (trust authentication on loopback, so the password travels but is not
checked): the migrations run as that role and the store reads back what it wrote.
"""

import pytest
from sqlalchemy import func, select, text

from rlhf.core import schema
from rlhf.core.store import ENV_URL, Store, database_url, register_model

from .test_deploy_files import SERVICES, substitute

PASSWORD = "s3cret-Pass_1"


@pytest.mark.postgres
def test_compose_database_url_migrates_and_stores_as_the_rlhf_role(postgres_server, monkeypatch, tmp_path):
    for sql in ("DROP DATABASE IF EXISTS rlhf WITH (FORCE)", "DROP ROLE IF EXISTS rlhf",
                f"CREATE ROLE rlhf LOGIN NOSUPERUSER PASSWORD '{PASSWORD}'", "CREATE DATABASE rlhf OWNER rlhf"):
        postgres_server.admin(sql)
    url = substitute(SERVICES["annotation"]["environment"][ENV_URL])
    url = url.replace(":change-me@", f":{PASSWORD}@").replace("@postgres:5432/", f"@127.0.0.1:{postgres_server.port}/")
    assert PASSWORD in url and str(postgres_server.port) in url, url
    monkeypatch.setenv(ENV_URL, url)
    st = Store.open(database_url(tmp_path / "rlhf.db"))
    try:
        with st.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user, current_database()")).one() == ("rlhf", "rlhf")
        with st.session() as s:
            register_model(s, "sft", "sft", "models/sft")
        with st.session(readonly=True) as s:
            assert s.scalar(select(func.count()).select_from(schema.Model)) == 1
    finally:
        st.dispose()
        postgres_server.admin("DROP DATABASE IF EXISTS rlhf WITH (FORCE)")
        postgres_server.admin("DROP ROLE IF EXISTS rlhf")
    assert not (tmp_path / "rlhf.db").exists()
