"""A policy config with an unknown method or an invalid DPO beta fails with one clear line (exit 2)."""

import pytest

from tests.rlhf.test_cli import one_error_line, rlhf, workspace  # noqa: F401 (a module-scoped fixture)


@pytest.mark.parametrize("override, says", [
    ("policy.methods=[dpo,sgd]", "policy.methods.1: Input should be 'dpo', 'best_of_n' or 'ppo'"),
    ("policy.methods=[ppo,ppo]", "policy.methods: Value error, methods must not repeat"),
    ("policy.dpo.beta=0", "policy.dpo.beta: Input should be greater than 0"),
    ("policy.dpo.beta=-0.5", "policy.dpo.beta: Input should be greater than 0"),
    ("policy.ppo.target_kl=0", "policy.ppo.target_kl: Input should be greater than 0"),
])
def test_round_with_a_bad_policy_config_fails_with_one_line(workspace, override, says):  # noqa: F811 (the imported fixture)
    line = one_error_line(rlhf("round", "--iter", "1", "-w", str(workspace), "--set", override))
    assert says in line, line


def test_bad_beta_in_rlhf_yaml_names_the_file_and_key(workspace):  # noqa: F811 (the imported fixture)
    cfg = workspace / "rlhf.yaml"
    text = cfg.read_text()
    try:
        cfg.write_text(text.replace("beta: 0.5", "beta: 0.0"))
        line = one_error_line(rlhf("status", "-w", str(workspace)))
        assert "rlhf.yaml: policy.dpo.beta: Input should be greater than 0" in line, line
    finally:
        cfg.write_text(text)


def test_ppo_is_accepted(workspace):  # noqa: F811 (the imported fixture)
    from rlhf.pipeline.config import validate

    assert validate({"policy": {"methods": ["dpo", "ppo", "best_of_n"]}}).policy.methods == ["dpo", "ppo", "best_of_n"]
