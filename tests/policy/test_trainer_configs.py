"""One config class per trainer, and the same defaults whether the round calls it or a script does.

Each trainer takes its section of rlhf.yaml (policy/config.py, reward/config.py) as its config
object and builds that class's defaults when none is passed; the workspace Config composes the
same classes, so `Config().policy.dpo == DPOConfig()` and so on. The stages hand the trainers
their sections as they are (`cfg is ctx.cfg.policy.dpo`), not copies rebuilt field by field.
"""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path
from types import NoneType, SimpleNamespace

import pytest

import policy.best_of_n
import policy.dpo
import policy.ppo
import policy.sft
import reward.train
from policy.config import BestOfNConfig, DPOConfig, GenerationConfig, PPOConfig, SFTConfig
from reward.config import RewardConfig
from rlhf.core import checkpoints
from rlhf.core.trainer_args import TrainRun
from rlhf.pipeline.common import model_row
from rlhf.pipeline.config import Config
from tests.test_layers import REPO, module_files

# (trainer, its config class, the file that defines it, the workspace section it gets; None: no section)
TRAINERS = [
    (policy.dpo.train_dpo, DPOConfig, "policy/config.py", lambda c: c.policy.dpo),
    (policy.ppo.train_ppo, PPOConfig, "policy/config.py", lambda c: c.policy.ppo),
    (policy.best_of_n.train_best_of_n, BestOfNConfig, "policy/config.py", lambda c: c.policy.best_of_n),
    (policy.sft.train_sft, SFTConfig, "policy/config.py", None),  # the demo's SFT sets its own (demo.sft_*)
    (reward.train.train_reward_model, RewardConfig, "reward/config.py", lambda c: c.reward),
]
IDS = [t[0].__name__ for t in TRAINERS]


class Captured(Exception):
    """Raised by a stand-in at the point where a trainer has settled its config: no training runs."""


def capture(*args, **kwargs):
    raise Captured(args, kwargs)


@functools.cache
def class_definitions() -> dict[str, list[str]]:
    """Class name -> where it is defined (path:line), over every first-party module."""
    out: dict[str, list[str]] = {}
    for path in module_files(REPO).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, []).append(f"{path.relative_to(REPO).as_posix()}:{node.lineno}")
    return out


@pytest.mark.parametrize(("trainer", "cls", "home", "section"), TRAINERS, ids=IDS)
def test_the_workspace_section_is_the_trainers_own_default(trainer, cls, home, section):
    if section is not None:
        assert type(section(Config())) is cls
        assert section(Config()) == cls()
    # The signature names the class itself: `cfg: DPOConfig | None = None`.
    param = inspect.signature(trainer).parameters["cfg"]
    assert param.default is None
    hint = eval(param.annotation, trainer.__globals__) if isinstance(param.annotation, str) else param.annotation
    assert set(hint.__args__) == {cls, NoneType}, hint
    # And that class is the only class of its name: no second, drifting copy elsewhere.
    where = class_definitions()[cls.__name__]
    assert len(where) == 1 and where[0].startswith(f"{home}:"), where


def test_ppo_samples_its_rollouts_as_the_round_samples_its_candidates():
    param = inspect.signature(policy.ppo.train_ppo).parameters["generation"]
    assert param.default is None and "GenerationConfig" in str(param.annotation)
    assert Config().generation == GenerationConfig()
    assert len(class_definitions()["GenerationConfig"]) == 1


# --- called directly without a config: the class's defaults ------------------------------------
def test_dpo_called_without_a_config_trains_with_dpo_defaults(monkeypatch):
    monkeypatch.setattr(checkpoints, "settings_of", capture)  # its first use of the settings
    with pytest.raises(Captured) as got:
        policy.dpo.train_dpo(SimpleNamespace(name_or_path="m"), None, [], Path("unused"))
    cfg, seed = got.value.args[0]
    assert type(cfg) is DPOConfig and cfg == Config().policy.dpo and seed == TrainRun().seed


def test_reward_model_training_called_without_a_config_uses_reward_defaults(monkeypatch):
    monkeypatch.setattr(reward.train, "load_reward_model",
                        lambda *a, **k: SimpleNamespace(config=SimpleNamespace()))
    monkeypatch.setattr(checkpoints, "settings_of", capture)
    with pytest.raises(Captured) as got:
        reward.train.train_reward_model("base", SimpleNamespace(pad_token_id=0), [], [], Path("unused"))
    cfg = got.value.args[0][0]
    assert type(cfg) is RewardConfig and cfg == Config().reward


def test_best_of_n_called_without_a_config_uses_best_of_n_defaults_not_sfts(monkeypatch):
    monkeypatch.setattr(policy.best_of_n, "train_sft", capture)
    with pytest.raises(Captured) as got:
        policy.best_of_n.train_best_of_n(None, None, [], Path("unused"))
    cfg = got.value.args[0][4]
    assert type(cfg) is BestOfNConfig and cfg == Config().policy.best_of_n
    assert (cfg.learning_rate, cfg.epochs) != (SFTConfig().learning_rate, SFTConfig().epochs)


def test_ppo_called_without_configs_uses_ppo_and_generation_defaults(monkeypatch):
    monkeypatch.setattr(policy.ppo, "_train", capture)
    with pytest.raises(Captured) as got:
        policy.ppo.train_ppo(None, None, None, [], lambda rows, texts: [], Path("unused"))
    args = got.value.args[0]
    cfg, run, generation = args[6], args[7], args[8]
    assert type(cfg) is PPOConfig and cfg == Config().policy.ppo
    assert generation == Config().generation and run == TrainRun()


def test_sft_called_without_a_config_uses_sft_defaults(monkeypatch):
    import trl

    monkeypatch.setattr(trl, "SFTConfig", capture)
    with pytest.raises(Captured) as got:
        policy.sft.train_sft(None, None, [], Path("unused"))
    kwargs, d = got.value.args[1], SFTConfig()
    assert (kwargs["num_train_epochs"], kwargs["learning_rate"], kwargs["max_length"],
            kwargs["per_device_train_batch_size"]) == (d.epochs, d.learning_rate, d.max_length, d.batch_size)


# --- the stages pass their sections as they are ---------------------------------------------
@pytest.fixture
def judged(tmp_path, monkeypatch):
    """A round after its annotate stage (simulated, store only), and its StageContext."""
    from rlhf.core.store import ENV_URL
    from tests.rlhf.pipeline.support import NOISELESS, bare_workspace, judged_round, stage_context

    monkeypatch.delenv(ENV_URL, raising=False)
    ws = bare_workspace(tmp_path / "ws")
    with stage_context(ws, ["policy.dpo.reward_pairs_prompts=0", *NOISELESS]) as ctx:
        judged_round(ctx, prompts=10)
        yield ctx


def method_call(monkeypatch, ctx, method: str, trainer: str) -> tuple:
    """Run the policy stage's method function with `trainer` captured; its positional arguments."""
    from rlhf.pipeline.stages.policy import METHODS
    from tests.rlhf.pipeline.support import replace_global

    fn = METHODS[method]
    replace_global(monkeypatch, fn, "load_policy", lambda ctx, path: (None, None))
    replace_global(monkeypatch, fn, trainer, capture)
    with pytest.raises(Captured) as got:
        fn(ctx, model_row(ctx, ctx.incumbent_id), ctx.dir / "out")
    return got.value.args[0]


def test_the_dpo_method_passes_the_workspace_section_itself(judged, monkeypatch):
    args = method_call(monkeypatch, judged, "dpo", "train_dpo")
    cfg, run = args[4], args[5]
    assert cfg is judged.cfg.policy.dpo
    assert (run.seed, run.log_dir, run.checkpoint_dir) == (judged.cfg.seed, judged.log_dir("dpo"), judged.log_dir("dpo"))


def test_the_best_of_n_method_passes_the_workspace_section_itself(judged, monkeypatch):
    from rlhf.core.types import Completion, PromptRow
    from rlhf.pipeline.stages.policy import METHODS
    from tests.rlhf.pipeline.support import replace_global

    rows = [PromptRow(id=1, messages=[{"role": "user", "content": "q"}])]
    samples = [Completion(1, k, f"a{k}", 2, 2, "stop") for k in range(2)]
    replace_global(monkeypatch, METHODS["best_of_n"], "scored_samples", lambda *a: (rows, samples, [0.0, 1.0]))
    args = method_call(monkeypatch, judged, "best_of_n", "train_best_of_n")
    assert args[4] is judged.cfg.policy.best_of_n and args[5].seed == judged.cfg.seed


def test_the_ppo_method_passes_the_workspace_sections_themselves(judged, monkeypatch):
    from rlhf.core import store as st
    from rlhf.pipeline.stages.policy import METHODS
    from tests.rlhf.pipeline.support import replace_global

    with judged.store.session() as s:
        st.register_model(s, "rm-helpful-iter-001", "reward", "models/rm-helpful-iter-001", round_iter=1,
                          method="rm-helpful")
    replace_global(monkeypatch, METHODS["ppo"], "reward_fn", lambda ctx, url=None: lambda rows, texts: [])
    replace_global(monkeypatch, METHODS["ppo"], "load_rm", lambda ctx, path: (None, None))
    args = method_call(monkeypatch, judged, "ppo", "train_ppo")
    assert args[6] is judged.cfg.policy.ppo and args[8] is judged.cfg.generation


def test_the_reward_stage_passes_the_workspace_section_itself(judged, monkeypatch):
    from rlhf.pipeline.stages import reward as reward_stage
    from tests.rlhf.pipeline.support import replace_global

    replace_global(monkeypatch, reward_stage.run, "load_policy", lambda ctx, path: (None, SimpleNamespace()))
    replace_global(monkeypatch, reward_stage.run, "train_reward_model", capture)
    with pytest.raises(Captured) as got:
        reward_stage.run(judged)
    args = got.value.args[0]
    assert args[5] is judged.cfg.reward and args[7] == judged.cfg.model.trust_remote_code
