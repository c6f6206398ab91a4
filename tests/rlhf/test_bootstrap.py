"""`rlhf init` and `rlhf prompts import`: bad input is refused before anything on disk or in the store changes."""

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from rlhf.core import schema
from rlhf.core.errors import UserError
from rlhf.pipeline import bootstrap
from rlhf.pipeline.bootstrap import import_prompts, init


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


def stored(store) -> list[tuple[str, str]]:
    with store.session() as s:
        return sorted((p.split, p.messages[-1]["content"]) for p in s.scalars(select(schema.Prompt)))


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"/" for p in sorted(root.rglob("*"))}


@pytest.fixture(autouse=True)
def _own_sqlite(monkeypatch):
    monkeypatch.delenv("RLHF_DATABASE_URL", raising=False)


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "proj"
    init(root, demo=False, force=False, overrides=[])
    (root / "data" / "judgments.jsonl").write_text("precious\n")
    return root


# ---------------------------------------------------------------------------- init


def test_bad_override_leaves_the_existing_workspace_as_it_was(workspace):
    before = snapshot(workspace)
    with pytest.raises(UserError, match="seed"):
        init(workspace, demo=False, force=True, overrides=["seed=abc"])
    assert snapshot(workspace) == before


def test_bad_override_creates_no_folder(tmp_path):
    with pytest.raises(UserError, match="seed"):
        init(tmp_path / "new" / "proj", demo=False, force=False, overrides=["seed=abc"])
    assert not (tmp_path / "new").exists()


def test_a_failed_build_leaves_the_disk_as_it_was(workspace, tmp_path, monkeypatch):
    def crash(*_):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bootstrap, "build_demo", crash)
    before = snapshot(workspace)
    with pytest.raises(RuntimeError):
        init(workspace, demo=True, force=True, overrides=[])
    assert snapshot(workspace) == before
    with pytest.raises(RuntimeError):
        init(tmp_path / "fresh" / "proj", demo=True, force=False, overrides=[])
    assert not (tmp_path / "fresh").exists()


def test_force_rebuilds_the_current_folder_in_place(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    init(Path("."), demo=False, force=True, overrides=["seed=7"])
    assert Path.cwd() == workspace and workspace.is_dir()
    assert sorted(p.name for p in workspace.iterdir()) == ["data", "guidelines.md", "leaderboard", "models",
                                                           "rlhf.db", "rlhf.yaml", "rounds"]
    assert "project: proj\nseed: 7\n" in (workspace / "rlhf.yaml").read_text()
    assert not list((workspace / "data").iterdir())


def test_a_file_in_the_way_is_one_user_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match=r"afile is a file, not a folder"):
        init(afile, demo=False, force=False, overrides=[])
    with pytest.raises(UserError, match=r"afile/sub: .*afile is a file, not a folder"):
        init(afile / "sub", demo=False, force=False, overrides=[])
    assert afile.read_text() == "x"


def test_init_in_a_user_folder_keeps_their_files_and_overwrites_none(tmp_path):
    root = tmp_path / "mine"
    (root / "data").mkdir(parents=True)
    (root / "data" / "prompts.jsonl").write_text("mine\n")
    init(root, demo=False, force=False, overrides=[])
    assert (root / "data" / "prompts.jsonl").read_text() == "mine\n" and (root / "rlhf.yaml").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "guidelines.md").write_text("my guidelines")
    with pytest.raises(UserError, match=r"already has guidelines.md"):
        init(other, demo=False, force=False, overrides=[])
    assert [p.name for p in other.iterdir()] == ["guidelines.md"]
    assert (other / "guidelines.md").read_text() == "my guidelines"


# ---------------------------------------------------------------------------- prompts import


@pytest.mark.parametrize("reference, message", [
    ({"kind": "exact"}, "an exact reference needs a non-empty string `answer`"),
    ("yellow", "`reference` must be an object"),
    ({"kind": "fuzzy"}, "reference kind must be one of"),
])
def test_a_reference_the_judge_cannot_use_is_refused(store, tmp_path, reference, message):
    path = write(tmp_path / "p.jsonl", [{"messages": user("ok")}, {"messages": user("q"), "reference": reference}])
    with pytest.raises(UserError, match=rf"p.jsonl:2: {message}"):
        import_prompts(store, path)
    assert stored(store) == []


def test_a_prompt_must_end_with_the_users_turn(store, tmp_path):
    path = write(tmp_path / "p.jsonl", [{"messages": user("q") + [{"role": "assistant", "content": "a"}]}])
    with pytest.raises(UserError, match=r"p.jsonl:1: the last message must be the user's"):
        import_prompts(store, path, split="eval")


def test_the_line_after_a_blank_line_is_named_right(store, tmp_path):
    path = write(tmp_path / "p.jsonl", [{"messages": user("q")}, "\n", {"messages": 5}])
    with pytest.raises(UserError, match=r"p.jsonl:3: `messages` must be"):
        import_prompts(store, path)


@pytest.mark.parametrize("first, second", [("train", "eval"), ("eval", "train")])
def test_a_prompt_is_never_in_both_splits(store, tmp_path, first, second):
    path = write(tmp_path / "p.jsonl", [{"messages": user("a")}, {"messages": user("b")}])
    assert import_prompts(store, path, split=first) == 2
    more = write(tmp_path / "more.jsonl", [{"messages": user("c")}, {"messages": user("b")}])
    with pytest.raises(UserError, match=rf"more.jsonl: 1 {second} prompt\(s\) are also {first} prompts \(line\(s\) 2\)"):
        import_prompts(store, more, split=second)
    assert stored(store) == [(first, "a"), (first, "b")]


def test_one_file_cannot_put_a_prompt_in_both_splits(store, tmp_path):
    path = write(tmp_path / "p.jsonl", [{"messages": user("a"), "split": "train"},
                                        {"messages": user("a"), "split": "eval"}])
    with pytest.raises(UserError, match=r"never appear in training data"):
        import_prompts(store, path)
    assert stored(store) == []


def test_a_repeated_line_is_one_prompt(store, tmp_path):
    path = write(tmp_path / "p.jsonl", [{"messages": user("a")}, {"messages": user("a")}])
    assert import_prompts(store, path) == 1
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(schema.Prompt)) == 1
