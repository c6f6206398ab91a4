"""Who is who in a distributed launch, without starting one (tests/e2e/test_distributed.py starts one)."""

import pytest

from rlhf.core import distributed
from rlhf.core.errors import UserError


def test_outside_a_launch_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")  # set by some cluster job environments for the pod, not by a launcher
    assert distributed.world_size() == 1
    assert distributed.is_main_process()
    assert distributed.broadcast({"a": 1}) == {"a": 1}
    assert distributed.per_device_batch(6, "reward.batch_size") == 6


def test_batches_are_per_step_over_all_processes(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.world_size() == 4
    assert distributed.per_device_batch(16, "reward.batch_size") == 4
    with pytest.raises(UserError, match=r"policy\.dpo\.batch_size=6 does not split over 4 processes"):
        distributed.per_device_batch(6, "policy.dpo.batch_size")


def test_cores_are_shared_among_a_launchs_processes_on_one_machine(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.cores_per_process() == 16
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert distributed.cores_per_process() == 2
