import pytest

from rlhf.core.errors import UserError
from rlhf.pipeline import config


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = config.validate({})
    p = tmp_path / "rlhf.yaml"
    p.write_text(config.dump(cfg))
    assert config.load(p) == cfg


def test_set_overrides_parse_yaml_scalars(tmp_path):
    p = tmp_path / "rlhf.yaml"
    p.write_text("project: x\n")
    cfg = config.load(p, ["generation.n=8", "policy.dpo.beta=0.25", "policy.methods=[dpo]", "round.isolate_stages=true"])
    assert cfg.generation.n == 8
    assert cfg.policy.dpo.beta == 0.25
    assert cfg.policy.methods == ["dpo"]
    assert cfg.round.isolate_stages is True


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("generation.n=1", "generation.n: Input should be greater than or equal to 2"),
        ("generation.backend=torch", "generation.backend"),
        ("annotation.simulated.noise=0.9", "annotation.simulated.noise"),
        ("reward.nope=1", "reward.nope: unknown key"),
        ("policy.methods=[dpo, dpo]", "policy.methods"),
        ("gates=['helpful_accuracy >> 1']", "gates"),
        ("annotation.argilla.workspace=", "annotation.argilla.workspace: String should have at least 1 character"),
        ("annotation.argilla.api_key_env=", "annotation.argilla.api_key_env: String should match pattern"),
        ("annotation.argilla.api_key_env=MY KEY", "annotation.argilla.api_key_env: String should match pattern"),
    ],
)
def test_invalid_values_name_the_key_path(tmp_path, override, fragment):
    p = tmp_path / "rlhf.yaml"
    p.write_text("{}\n")
    with pytest.raises(UserError) as e:
        config.load(p, [override])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_names_the_line(tmp_path):
    p = tmp_path / "rlhf.yaml"
    p.write_text("project: x\ngeneration:\n  n: [1,\n")
    with pytest.raises(UserError, match="line"):
        config.load(p)


def test_override_without_equals_is_an_error(tmp_path):
    p = tmp_path / "rlhf.yaml"
    p.write_text("{}\n")
    with pytest.raises(UserError, match="KEY.PATH=VALUE"):
        config.load(p, ["generation.n"])


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.mkdir(), "is a folder, not a config file"),
    (lambda p: p.write_bytes(b"project: caf\xe9\n"), "not UTF-8 text"),
    (lambda p: None, "no such config file"),
])
def test_a_config_file_that_cannot_be_read_is_one_user_error(tmp_path, make, fragment):
    p = tmp_path / "rlhf.yaml"
    make(p)
    with pytest.raises(UserError, match=fragment):
        config.load(p)


@pytest.mark.parametrize("key", ["generation.openai.base_url", "annotation.argilla.url", "policy.ppo.reward_url"])
def test_server_urls_must_be_http(tmp_path, key):
    p = tmp_path / "rlhf.yaml"
    p.write_text("{}\n")
    for bad in ("notaurl", "ftp://127.0.0.1/x", "http://"):
        with pytest.raises(UserError, match=f"{key}: .*must be an http"):
            config.load(p, [f"{key}={bad}"])
    assert config.load(p, [f"{key}=https://127.0.0.2:8443/v1"])
