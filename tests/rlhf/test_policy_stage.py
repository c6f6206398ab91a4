"""The policy stage's methods when the round gives them nothing to learn from."""

from __future__ import annotations

from rlhf.core import store as st
from rlhf.core.types import Completion, PromptRow
from rlhf.core.workspace import open_workspace
from rlhf.pipeline import methods
from rlhf.pipeline.bootstrap import init
from rlhf.pipeline.config import load as load_config
from rlhf.pipeline.context import StageContext
from rlhf.pipeline.stages import policy


def test_best_of_n_with_one_sample_per_prompt_is_skipped_not_a_crash(tmp_path, monkeypatch):
    init(tmp_path / "proj", demo=False, force=False, overrides=[])
    ws = open_workspace(tmp_path / "proj")
    cfg = load_config(ws.config_path, ["policy.methods=[best_of_n]"])
    store = st.Store.open(st.database_url(ws.db_path))
    try:
        with store.session() as s:
            sft = st.register_model(s, "sft", "sft", "models/sft")
            ids = st.create_round(s, 1, {}, sft.id).id, sft.id
        rows = [PromptRow(id=i, messages=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
        samples = [Completion(i, 0, f"a{i}", 2, 2, "stop", {}) for i in range(3)]  # generation.n = 1
        monkeypatch.setattr(methods, "scored_samples", lambda *a: (rows, samples, [0.1, 0.2, 0.3]))
        results = policy.run(StageContext(ws, cfg, store, 1, *ids, "simulated"))
        assert "min_reward_gap" in results["best_of_n"]["skipped"]
        assert not ws.model_path("policy-iter-001-best-of-n").exists()
    finally:
        store.dispose()
