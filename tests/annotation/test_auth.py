"""Credentials, session cookies and the session key."""

from __future__ import annotations

import os
import stat

import pytest
from itsdangerous import URLSafeTimedSerializer

from annotation import auth
from rlhf.errors import UserError
from rlhf.store import Store


@pytest.fixture
def st(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path / 'auth.db'}")
    yield s
    s.dispose()


def test_credentials_are_hashed_and_checked(st: Store) -> None:
    with st.session() as s:
        row, secret = auth.add_annotator(s, "ann", "admin")
        assert row.secret_hash.startswith("$argon2id$") and secret not in row.secret_hash
        with pytest.raises(UserError, match="already exists"):
            auth.add_annotator(s, "ann")
        with pytest.raises(UserError, match="role"):
            auth.add_annotator(s, "other", "boss")
    with st.session() as s:
        who = auth.authenticate(s, "ann", secret)
        assert who is not None and who.name == "ann" and who.is_admin
        assert auth.authenticate(s, "ann", secret + "x") is None
        assert auth.authenticate(s, "nobody", secret) is None
        auth.set_active(s, "ann", False)
        assert auth.authenticate(s, "ann", secret) is None


def test_cookies_are_signed_expire_and_end_with_a_new_credential(st: Store) -> None:
    signer = auth.SessionSigner("s" * 32, 3600)
    with st.session() as s:
        row, secret = auth.add_annotator(s, "ann")
        who = auth.Identity(row.id, row.name, row.role)
        cookie = signer.issue(s, who)
        assert signer.resolve(s, cookie) == who
        assert signer.resolve(s, cookie[:-2] + "xx") is None
        assert auth.SessionSigner("t" * 32, 3600).resolve(s, cookie) is None  # another key
        forged = URLSafeTimedSerializer("t" * 32, salt="rlhf-annotator-session").dumps({"a": row.id, "f": ""})
        assert signer.resolve(s, forged) is None
        assert auth.SessionSigner("s" * 32, -1).resolve(s, cookie) is None  # expired
        auth.add_annotator(s, "ann", reset=True)
        assert signer.resolve(s, cookie) is None  # the old credential's sessions are over
        assert auth.authenticate(s, "ann", secret) is None


def test_session_key_file_and_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    key = auth.session_key(tmp_path, ".session-secret")
    path = tmp_path / ".session-secret"
    assert len(key) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.session_key(tmp_path, ".session-secret") == key
    monkeypatch.setenv(auth.SECRET_ENV, "e" * 20)
    assert auth.session_key(tmp_path, ".session-secret") == "e" * 20
    monkeypatch.setenv(auth.SECRET_ENV, "short")
    with pytest.raises(UserError, match="too short"):
        auth.session_key(tmp_path, ".session-secret")
