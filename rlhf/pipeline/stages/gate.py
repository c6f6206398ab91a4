"""Stage 6: apply the gates of rlhf.yaml; promote the best passing candidate or keep the incumbent."""

from __future__ import annotations

import json

from rich.console import Console
from sqlalchemy import delete

from evals.gates import choose, evaluate_gates, failure_text
from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.workspace import atomic_file
from rlhf.pipeline.common import complete, round_candidates
from rlhf.pipeline.context import REPORTS
from rlhf.pipeline.results import round_metrics

# Among candidates that pass every gate, the one the helpfulness reward model prefers most.
RANK_BY = "win_rate_vs_incumbent"
console = Console(stderr=True)


def run(ctx) -> dict:
    with ctx.store.session() as s:
        cands = round_candidates(s, ctx.iter)
        incumbent = round_metrics(s, ctx.round_id, ctx.incumbent_id)
        checks = {m.name: evaluate_gates(ctx.cfg.gates, round_metrics(s, ctx.round_id, m.id), incumbent) for m in cands}
        scores = {m.name: round_metrics(s, ctx.round_id, m.id).get(RANK_BY, float("nan")) for m in cands}
        ids = {m.name: m.id for m in cands}
    winner, reason = choose(checks, scores)
    for name, cs in checks.items():
        for c in cs:
            console.print(f"  gate {name}: {'pass' if c.passed else 'FAIL'} {c.reason}", markup=False)
    console.print(f"  {reason}", markup=False)  # model names and gate expressions are the user's text
    decision = {"promoted": winner, "reason": reason,
                "checks": {n: [c.to_dict() for c in cs] for n, cs in checks.items()}}
    path = ctx.dir / REPORTS["gate"]
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(decision, indent=2))

    def record(s):
        s.execute(delete(schema.GateDecision).where(schema.GateDecision.round_id == ctx.round_id))
        for name, cs in checks.items():
            ok = name == winner
            failed = [failure_text(c) for c in cs if not c.passed]
            why = reason if ok else (f"passed over for {winner}" if winner else "kept incumbent") + (
                "; failed " + ", ".join(failed) if failed else "")
            s.add(schema.GateDecision(round_id=ctx.round_id, model_id=ids[name], checks=[c.to_dict() for c in cs],
                                      decision="promote" if ok else "reject", reason=why))
            s.get(schema.Model, ids[name]).status = "promoted" if ok else "rejected"
        rnd = st.get_round(s, ctx.iter)
        rnd.status, rnd.current_stage, rnd.finished_at = "complete", None, schema.utcnow()

    # The round writes the leaderboard after this stage (rlhf/pipeline/round.py), also on a rerun.
    complete(ctx, "gate", decision, [("gate", path)], record)
    return decision
