"""Workspaces for the stage tests: a bare one per test (store only), and a copy of the tiny demo
(its models trained once per test run, shared with tests/e2e)."""

from __future__ import annotations

import shutil

import pytest

from rlhf.core.store import ENV_URL
from tests.e2e.conftest import tiny_demo  # noqa: F401  (the session fixture, built once per run)
from tests.rlhf.pipeline.support import bare_workspace


@pytest.fixture(autouse=True)
def workspace_store(monkeypatch):
    """Every store here is the workspace's rlhf.db, whatever the shell's RLHF_DATABASE_URL says."""
    monkeypatch.delenv(ENV_URL, raising=False)


@pytest.fixture
def ws(tmp_path):
    return bare_workspace(tmp_path / "ws")


@pytest.fixture
def demo_ws(tiny_demo, tmp_path):  # noqa: F811
    from rlhf.core.workspace import open_workspace

    shutil.copytree(tiny_demo, tmp_path / "demo")
    return open_workspace(tmp_path / "demo")
