"""Credentials, session cookies and the session key."""

from __future__ import annotations

import os
import stat

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from annotation import auth, queue
from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.core.store import Store


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


def test_logout_ends_every_session_of_the_annotator(st: Store) -> None:
    signer = auth.SessionSigner("s" * 32, 3600)
    with st.session() as s:
        row, _ = auth.add_annotator(s, "ann")
        other, _ = auth.add_annotator(s, "other")
        who, them = auth.Identity(row.id, row.name, row.role), auth.Identity(other.id, other.name, other.role)
        laptop, phone, theirs = signer.issue(s, who), signer.issue(s, who), signer.issue(s, them)
        # A cookie from before session generations existed: the right key and fingerprint, no "g".
        legacy = URLSafeTimedSerializer("s" * 32, salt="rlhf-annotator-session").dumps(
            {"a": row.id, "f": auth._fingerprint(row.secret_hash)}
        )
        assert signer.resolve(s, legacy) == who  # read as generation 0: an upgrade logs nobody out
        auth.end_sessions(s, row.id)
        assert [signer.resolve(s, c) for c in (laptop, phone, legacy)] == [None, None, None]
        assert signer.resolve(s, theirs) == them  # only the annotator who logged out
        assert signer.resolve(s, signer.issue(s, who)) == who  # logging in again works


def test_reset_keeps_role_and_active_flag_and_sets_a_role_only_when_asked(st: Store) -> None:
    with st.session() as s:
        auth.add_annotator(s, "lead", "admin")
        row, secret = auth.add_annotator(s, "lead", reset=True)
        assert row.role == "admin"
        assert auth.authenticate(s, "lead", secret) is not None
        auth.set_active(s, "lead", False)
        row, secret = auth.add_annotator(s, "lead", reset=True)
        assert row.active is False and auth.authenticate(s, "lead", secret) is None
        assert auth.add_annotator(s, "lead", "annotator", reset=True)[0].role == "annotator"
        assert auth.add_annotator(s, "new", reset=True)[0].role == "annotator"


def test_simulated_annotators_never_get_a_credential(st: Store) -> None:
    with st.session() as s:
        queue.ensure_annotator(s, "sim-1", simulated=True)
        for reset in (False, True):
            with pytest.raises(UserError, match="simulated"):
                auth.add_annotator(s, "sim-1", reset=reset)
        assert s.scalar(select(schema.Annotator.secret_hash).where(schema.Annotator.name == "sim-1")) is None


def test_names_are_looked_up_as_add_stores_them(st: Store) -> None:
    with st.session() as s:
        row, secret = auth.add_annotator(s, " dave ")
        assert row.name == "dave"
        assert auth.authenticate(s, " dave", secret) is not None
        assert auth.set_active(s, " dave", False).name == "dave"
        with pytest.raises(UserError, match="at most 128"):
            auth.add_annotator(s, "x" * 129)
