"""`rlhf reward serve --model NAME`: a registered reward model's name resolves to its folder
from the workspace's store, whichever database holds it (rlhf.db, or RLHF_DATABASE_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.cli.reward import resolve_models
from rlhf.core import store as st
from rlhf.pipeline.bootstrap import init

NAME = "rm-helpful-iter-001"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def workspace(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace whose store holds a registered reward model: its rlhf.db, or a PostgreSQL
    database named by RLHF_DATABASE_URL (and then no rlhf.db at all)."""
    if request.param == "postgresql":
        monkeypatch.setenv(st.ENV_URL, request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv(st.ENV_URL, raising=False)
    ws = tmp_path / "ws"
    init(ws, demo=False, force=False, overrides=[])
    assert (ws / "rlhf.db").exists() == (request.param == "sqlite")
    store = st.Store.open(st.database_url(ws / "rlhf.db"))
    try:
        assert store.backend == request.param
        with store.session() as s:
            st.register_model(s, NAME, "reward", f"models/{NAME}", round_iter=1, method="rm-helpful")
            st.register_model(s, "rm-elsewhere", "reward", "/srv/models/rm-elsewhere")
            st.register_model(s, "sft", "sft", "models/sft")
    finally:
        store.dispose()
    return ws


def test_a_registered_reward_model_name_resolves_to_its_folder(workspace: Path):
    assert resolve_models([NAME, "rm-elsewhere"], workspace) == [
        (NAME, str(workspace / "models" / NAME)),
        ("rm-elsewhere", "/srv/models/rm-elsewhere"),
    ]
    # Not a reward model: the name is not looked up in the store, so it is taken for a hub id.
    assert resolve_models(["sft"], workspace) == [("sft", "sft")]
