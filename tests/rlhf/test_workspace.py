import pytest

from rlhf.core.workspace import atomic_dir, atomic_file, sweep_temporaries


def test_atomic_dir_appears_only_when_complete(tmp_path):
    final = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    assert not list((tmp_path / "models").iterdir())
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text("whole")
    assert (final / "weights").read_text() == "whole"


def test_atomic_file_replaces_the_old_version_whole(tmp_path):
    final = tmp_path / "report.json"
    final.write_text("old")
    with pytest.raises(ValueError):
        with atomic_file(final) as tmp:
            tmp.write_text("new, half")
            raise ValueError
    assert final.read_text() == "old"


def test_sweep_removes_leftovers_of_killed_writes(tmp_path):
    (tmp_path / "models" / ".tmp-m-1234").mkdir(parents=True)
    (tmp_path / "rounds" / ".tmp-x.parquet-ab").parent.mkdir(parents=True)
    (tmp_path / "rounds" / ".tmp-x.parquet-ab").write_text("x")
    (tmp_path / "models" / "keep").mkdir()
    sweep_temporaries(tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["keep"]
    assert not list((tmp_path / "rounds").iterdir())


class Killed(BaseException):
    """What a SIGKILL looks like to the code after it: nothing more runs."""


def test_atomic_dir_killed_while_replacing_leaves_no_half_deleted_folder(tmp_path, monkeypatch):
    import shutil

    from rlhf.core import workspace

    final = tmp_path / "models" / "m"
    with atomic_dir(final) as tmp:
        for name in ("config.json", "model.safetensors"):
            (tmp / name).write_text("old")
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        # Deletes one file of the folder, then the process dies.
        next(p for p in sorted(path.iterdir()) if p.is_file()).unlink()
        raise Killed

    monkeypatch.setattr(workspace.shutil, "rmtree", killed_midway)
    with pytest.raises(Killed):
        with atomic_dir(final) as tmp:
            for name in ("config.json", "model.safetensors"):
                (tmp / name).write_text("new")
    monkeypatch.setattr(workspace.shutil, "rmtree", real_rmtree)
    # Whatever `final` holds is one whole version, and the leftovers go with the next sweep.
    if final.exists():
        contents = {p.name: p.read_text() for p in final.iterdir()}
        assert contents in ({"config.json": "old", "model.safetensors": "old"},
                            {"config.json": "new", "model.safetensors": "new"}), contents
    sweep_temporaries(tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] in ([], ["m"])
