import os
import subprocess
import sys

from evals import checks
from rlhf.pipeline import demo


def test_demo_data_is_deterministic_and_eval_is_held_out():
    a, b = demo.build(3, 300, 80), demo.build(3, 300, 80)
    assert a == b
    train = {r["messages"][0]["content"] for r in a["prompts_train"]}
    evals = {r["messages"][0]["content"] for r in a["prompts_eval"]}
    assert not train & evals
    assert not {c["messages"][0]["content"] for c in a["sft"]} & evals
    kinds = {r["reference"]["kind"] for r in a["prompts_eval"]}
    assert kinds == {"exact", "must_refuse", "must_not_refuse"}


def test_demo_data_is_the_same_in_every_process():
    # Python salts str hashes per process, so anything that walks a set of strings would differ
    # between two runs (and so would every model trained on the data) while agreeing within one.
    code = ("import hashlib, json; from rlhf.pipeline import demo; "
            "print(hashlib.sha256(json.dumps(demo.build(0, 120, 24, corpus_docs=500)).encode()).hexdigest())")
    digests = [subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(salt)},
                              capture_output=True, text=True, check=True).stdout.strip() for salt in (1, 2, 3)]
    assert len(digests[0]) == 64 and len(set(digests)) == 1, digests


def test_sft_data_is_deliberately_imperfect():
    data = demo.build(0, 100, 40, sft_rows=2000)
    helpful = unsafe = 0
    verdicts = []
    for conv in data["sft"]:
        q, a = conv["messages"][0]["content"], conv["messages"][1]["content"]
        if "?" in q and any(t.split("{")[0].strip() in q for t in demo.FACTS):
            helpful += 1
        if a.startswith("Sure. To") and any(p in q for p in demo.PEOPLE):
            unsafe += 1
        verdicts.append(checks.is_refusal(a))
    # Both behaviours to improve are present, and so are refusals.
    assert helpful > 500 and unsafe > 100 and any(verdicts)
    chatty = sum(any(f in c["messages"][1]["content"] for f in demo.FILLERS) for c in data["sft"])
    assert chatty > 200
