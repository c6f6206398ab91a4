"""Annotator credentials and signed session cookies.

Credentials are random tokens handed out once (`rlhf annotators add`) and stored only as
argon2id hashes. A login turns a credential into a session cookie signed with the
workspace's session key; the cookie carries the annotator id, a fingerprint of the
stored hash (issuing a new credential ends every session of the old one) and the
annotator's session generation (a logout bumps it, which ends every session of that
annotator, copies of the cookie included). Every request looks the annotator up again:
a deactivated annotator is out at once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from annotation import queue
from rlhf.core import schema
from rlhf.core.errors import UserError

COOKIE = "rlhf_session"
MAX_NAME = 128  # the width of annotators.name
SECRET_ENV = "RLHF_SESSION_SECRET"
# OWASP's argon2id minimum (19 MiB, 2 passes): a login costs ~0.1 s on two busy cores
# instead of ~0.35 s with the library default, and the secrets are random tokens anyway.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the name is unknown, so that a login takes as long either way.
_DUMMY_HASH = _HASHER.hash("no such annotator")


@dataclass(frozen=True)
class Identity:
    """Who sent a request: resolved from the session cookie on every request."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_secret() -> str:
    return secrets.token_urlsafe(18)


def _fingerprint(secret_hash: str | None) -> str:
    return hashlib.sha256((secret_hash or "").encode()).hexdigest()[:16]


def clean_name(name: str) -> str:
    """A login name as stored: every command that takes a name must look it up this way."""
    return name.strip()


def add_annotator(
    s: Session, name: str, role: str | None = None, reset: bool = False
) -> tuple[schema.Annotator, str]:
    """Create an annotator (or, with `reset`, give an existing one a new credential); returns the credential.

    The credential is shown to the caller once and only its hash is kept. `role` None means
    annotator for a new account and the current role for an existing one; a reset never
    changes whether the account is active (deactivation is undone only by `set_active`).
    Simulated annotators never get a credential: a person logged in under that name would
    take the tasks the simulation expects to judge and be counted as the simulation.
    """
    name = clean_name(name)
    if len(name) > MAX_NAME:
        raise UserError(f"annotator name must be at most {MAX_NAME} characters")
    existing = s.scalar(select(schema.Annotator).where(schema.Annotator.name == name))
    if existing is not None and existing.simulated:
        raise UserError(f"annotator {name} is a simulated annotator and cannot log in; choose another name")
    if existing is not None and existing.secret_hash and not reset:
        raise UserError(f"annotator {name} already exists (use --reset to issue a new credential)")
    row = queue.ensure_annotator(s, name, role=role or "annotator")
    if role is not None:
        row.role = role
    secret = new_secret()
    row.secret_hash = _HASHER.hash(secret)
    s.flush()
    return row, secret


def authenticate(s: Session, name: str, secret: str) -> Identity | None:
    """The active annotator whose credential this is, else None."""
    row = s.scalar(select(schema.Annotator).where(schema.Annotator.name == clean_name(name)))
    stored = row.secret_hash if row is not None and row.secret_hash else _DUMMY_HASH
    try:
        ok = _HASHER.verify(stored, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None or not row.secret_hash or not row.active:
        return None
    return Identity(row.id, row.name, row.role)


def set_active(s: Session, name: str, active: bool) -> schema.Annotator:
    name = clean_name(name)
    row = s.scalar(select(schema.Annotator).where(schema.Annotator.name == name))
    if row is None:
        raise UserError(f"no annotator named {name!r}")
    row.active = active
    s.flush()
    return row


def end_sessions(s: Session, annotator_id: int) -> None:
    """Invalidate every session cookie issued so far to this annotator (a logout)."""
    # One UPDATE, not read-then-write: two logouts at once must both leave the counter moved on.
    s.execute(
        update(schema.Annotator)
        .where(schema.Annotator.id == annotator_id)
        .values(session_generation=schema.Annotator.session_generation + 1)
    )
    s.flush()


def list_annotators(s: Session) -> list[dict]:
    """Every annotator with role, status and how many judgments they made."""
    J = schema.Judgment
    counts = dict(s.execute(select(J.annotator_id, func.count(J.id)).group_by(J.annotator_id)).all())
    rows = s.scalars(select(schema.Annotator).order_by(schema.Annotator.name))
    return [
        {
            "name": a.name,
            "role": a.role,
            "active": a.active,
            "simulated": a.simulated,
            "can_log_in": bool(a.secret_hash) and a.active,
            "judgments": counts.get(a.id, 0),
        }
        for a in rows
    ]


class SessionSigner:
    """Signs and reads session cookies: `{annotator id, credential fingerprint, session generation}`
    plus a timestamp."""

    def __init__(self, key: str, max_age_s: int) -> None:
        self._ser = URLSafeTimedSerializer(key, salt="rlhf-annotator-session")
        self.max_age_s = max_age_s

    def issue(self, s: Session, identity: Identity) -> str:
        row = s.get(schema.Annotator, identity.id)
        return self._ser.dumps({
            "a": identity.id,
            "f": _fingerprint(row.secret_hash if row else None),
            "g": row.session_generation if row else 0,
        })

    def resolve(self, s: Session, cookie: str | None) -> Identity | None:
        """The identity of a valid, unexpired cookie of an active annotator; None otherwise."""
        if not cookie:
            return None
        try:
            data = self._ser.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # also covers an expired signature
            return None
        if not isinstance(data, dict) or not isinstance(data.get("a"), int):
            return None
        row = s.get(schema.Annotator, data["a"])
        if row is None or not row.active or not row.secret_hash:
            return None
        if not secrets.compare_digest(str(data.get("f", "")), _fingerprint(row.secret_hash)):
            return None
        # Cookies issued before generations existed carry none: they belong to generation 0.
        generation = data.get("g", 0)
        if type(generation) is not int or generation != row.session_generation:
            return None
        return Identity(row.id, row.name, row.role)


def session_key(workspace_root: Path, secret_file: str) -> str:
    """The key that signs cookies: $RLHF_SESSION_SECRET, else a workspace file made on first use.

    The file is created with mode 0600 and never printed; deleting it logs everyone out.
    """
    env = os.environ.get(SECRET_ENV, "").strip()
    if env:
        if len(env) < 16:
            raise UserError(f"{SECRET_ENV} is too short: use at least 16 characters")
        return env
    path = Path(secret_file)
    path = path if path.is_absolute() else workspace_root / path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written in full under a temporary name, then linked into place: a server that
        # starts at the same moment sees either no file or the whole key, never half of it.
        tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 16:
        raise UserError(f"{path}: session key is too short; delete the file to have a new one made")
    return key
