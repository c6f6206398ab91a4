"""Which checkpoint a reward-model run resumes from."""

import json

from rlhf.core import checkpoints
from rlhf.core.types import PreferencePair


def make(folder, step, complete=True):
    d = folder / f"checkpoint-{step}"
    d.mkdir(parents=True)
    if complete:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return d


def test_resumes_from_the_newest_complete_checkpoint_and_drops_a_half_written_one(tmp_path):
    key = checkpoints.fingerprint("base", [PreferencePair([], "a", "b")], {"lr": 1})
    assert checkpoints.prepare(tmp_path, key) == (None, 0)
    make(tmp_path, 3)
    make(tmp_path, 6)
    half = make(tmp_path, 9, complete=False)
    path, step = checkpoints.prepare(tmp_path, key)
    assert (path.name, step) == ("checkpoint-6", 6)
    assert not half.exists()


def test_other_inputs_start_over(tmp_path):
    pairs = [PreferencePair([], "a", "b")]
    key = checkpoints.fingerprint("base", pairs, {"lr": 1})
    checkpoints.prepare(tmp_path, key)
    make(tmp_path, 3)
    (tmp_path / "events.out.tfevents").write_text("logs stay")
    other = checkpoints.fingerprint("base", [*pairs, PreferencePair([], "b", "a")], {"lr": 1})
    assert other != key and other != checkpoints.fingerprint("base", pairs, {"lr": 2})
    assert checkpoints.prepare(tmp_path, other) == (None, 0)
    assert not (tmp_path / "checkpoint-3").exists() and (tmp_path / "events.out.tfevents").exists()
