"""`rlhf prompts import` and `rlhf preferences import`: each source format, column mapping, tags,
one-line errors with exit 2, and re-imports that add nothing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from rlhf.core import schema
from rlhf.core import store as st
from rlhf.core.errors import UserError
from rlhf.core.sources import read_source
from rlhf.pipeline.imports import import_preferences, import_prompts
from tests.annotation.helpers import run as cli


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def store(ws):
    s = st.Store.open(st.database_url(ws.db_path))
    yield s
    s.dispose()


def prompts(store) -> list[tuple[str, str, list[str], str]]:
    """(split, last user message, tags, source) of every stored prompt, in import order."""
    with store.session(readonly=True) as s:
        return [(p.split, p.messages[-1]["content"], p.tags, p.source)
                for p in s.scalars(select(schema.Prompt).order_by(schema.Prompt.id))]


def pairs(store) -> list[tuple]:
    with store.session(readonly=True) as s:
        return [(p.source, p.head, p.prompt, p.chosen, p.rejected, p.margin, p.split)
                for p in s.scalars(select(schema.ImportedPreference).order_by(schema.ImportedPreference.id))]


ROWS = [  # one of each row format: the project's, TRL conversational, TRL prompt-only
    {"messages": user("project row"), "tags": ["safety"], "reference": {"kind": "must_refuse"}},
    {"prompt": [{"role": "system", "content": "be brief"}, *user("conversational row")]},
    {"prompt": "prompt-only row", "tags": ["helpful"]},
]


# ----------------------------------------------------------------------------- prompts: formats


def test_jsonl_reads_the_project_and_trl_row_formats(store, tmp_path):
    # Columns are found per row: `messages` where a row has it, else `prompt`; a file mixing them is one table.
    path = write_jsonl(tmp_path / "p.jsonl", [ROWS[0]])
    assert import_prompts(store, path) == 1
    trl = write_jsonl(tmp_path / "trl.jsonl", ROWS[1:])
    assert import_prompts(store, trl, split="eval") == 2
    assert prompts(store) == [("train", "project row", ["safety"], "p.jsonl"),
                              ("eval", "conversational row", [], "trl.jsonl"),
                              ("eval", "prompt-only row", ["helpful"], "trl.jsonl")]
    with store.session(readonly=True) as s:
        first, second = s.scalars(select(schema.Prompt).order_by(schema.Prompt.id).limit(2))
        assert first.reference == {"kind": "must_refuse"}
        assert second.messages[0] == {"role": "system", "content": "be brief"}
    # Rows already present are skipped.
    assert import_prompts(store, path) == 0 and import_prompts(store, trl, split="eval") == 0


def test_json_csv_and_parquet_give_the_same_prompts(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "one", "tags": ["a"]}, {"prompt": "two"}]))
    (tmp_path / "p.csv").write_text('prompt,tags\n"one","a"\n"three","b, c"\n')
    pq.write_table(pa.Table.from_pylist([{"prompt": user("four"), "tags": ["d"]}, {"prompt": user("one"), "tags": []}]),
                   tmp_path / "p.parquet")
    assert import_prompts(store, tmp_path / "p.json") == 2
    assert import_prompts(store, tmp_path / "p.csv") == 1  # "one" is there already
    assert import_prompts(store, tmp_path / "p.parquet") == 1
    assert [(m, t, s) for _, m, t, s in prompts(store)] == [
        ("one", ["a"], "p.json"), ("two", [], "p.json"), ("three", ["b", "c"], "p.csv"), ("four", ["d"], "p.parquet")]


def test_a_csv_cell_may_hold_a_conversation_as_json(store, tmp_path):
    (tmp_path / "p.csv").write_text('messages,tags\n"' + json.dumps(user("q")).replace('"', '""') + '","[""x""]"\n')
    assert import_prompts(store, tmp_path / "p.csv") == 1
    assert prompts(store) == [("train", "q", ["x"], "p.csv")]


def test_a_datasets_save_to_disk_folder_and_its_splits(store, tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list([{"prompt": "alpha"}, {"prompt": "beta"}]).save_to_disk(str(tmp_path / "one"))
    assert import_prompts(store, tmp_path / "one") == 2
    DatasetDict({"train": Dataset.from_list([{"question": "gamma"}]),
                 "test": Dataset.from_list([{"question": "delta"}, {"question": "epsilon"}])}
                ).save_to_disk(str(tmp_path / "dict"))
    assert import_prompts(store, tmp_path / "dict") == 1  # train by default; `question` is a text column
    assert import_prompts(store, tmp_path / "dict", split="eval", dataset_split="test", limit=1) == 1
    assert [(s, m) for s, m, _, _ in prompts(store)] == [
        ("train", "alpha"), ("train", "beta"), ("train", "gamma"), ("eval", "delta")]
    with pytest.raises(UserError, match=r"dict: no split 'dev' \(--dataset-split\); its splits: train, test"):
        import_prompts(store, tmp_path / "dict", dataset_split="dev")


def test_files_datasets_reads_go_through_load_dataset(store, tmp_path):
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "zipped"}) + "\n")
    (tmp_path / "lines.txt").write_text("first line\nsecond line\n")
    assert import_prompts(store, tmp_path / "p.jsonl.gz") == 1
    assert import_prompts(store, tmp_path / "lines.txt", tags=["plain"]) == 2  # `text`, one prompt per line
    assert prompts(store) == [("train", "zipped", [], "p.jsonl.gz"), ("train", "first line", ["plain"], "lines.txt"),
                              ("train", "second line", ["plain"], "lines.txt")]


def test_a_data_folder_goes_through_load_dataset(store, tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"prompt": "from a folder"}])
    write_jsonl(folder / "test.jsonl", [{"prompt": "held out"}])
    assert import_prompts(store, folder) == 1
    assert import_prompts(store, folder, split="eval", dataset_split="test") == 1
    assert [(s, m, src) for s, m, _, src in prompts(store)] == [("train", "from a folder", "mydata"),
                                                                ("eval", "held out", "mydata")]


def test_a_hub_name_offline_fails_with_one_line(store, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"^someone/prompts: no such file or folder, and loading it from the "
                                        r"Hugging Face Hub failed: the Hugging Face Hub is offline"):
        import_prompts(store, "someone/prompts")
    with pytest.raises(UserError, match=r"^nope\.jsonl: no such file or folder$"):
        import_prompts(store, "nope.jsonl")


# ----------------------------------------------------------------------------- prompts: columns, tags, limit


def test_column_mapping_tags_and_limit(store, tmp_path):
    (tmp_path / "p.csv").write_text("id,question,category,subset\n1,q1,safety,eval\n2,q2,\"helpful,x\",train\n"
                                    "3,q3,,train\n")
    cols = {"prompt": "question", "tags": "category", "split": "subset"}
    assert import_prompts(store, tmp_path / "p.csv", columns=cols, tags=["mine", "safety"], limit=2) == 2
    assert prompts(store) == [("eval", "q1", ["safety", "mine"], "p.csv"),
                              ("train", "q2", ["helpful", "x", "mine", "safety"], "p.csv")]
    assert import_prompts(store, tmp_path / "p.csv", columns=cols) == 1  # the third; the first two are there


def test_missing_columns_are_named_with_the_columns_there_are(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("id,question\n1,q\n")
    with pytest.raises(UserError, match=r"^p.csv: no column 'prompt_text' \(--map prompt=prompt_text\); "
                                        r"its columns: id, question$") as e:
        import_prompts(store, "p.csv", columns={"prompt": "prompt_text"})
    assert "\n" not in str(e.value)
    (tmp_path / "two.csv").write_text("id,score\n1,2\n")
    with pytest.raises(UserError, match=r"no prompt column \(looked for messages, prompt, text.*--map prompt=COLUMN; "
                                        r"its columns: id, score"):
        import_prompts(store, tmp_path / "two.csv")
    assert prompts(store) == []


def test_cli_prompts_import_maps_columns_and_a_missing_one_is_one_line_and_exit_2(ws, store, tmp_path, capsys):
    (tmp_path / "p.csv").write_text("question,kind\nq1,safety\n")
    code, out, err = cli(capsys, "prompts", "import", str(tmp_path / "p.csv"), "-w", str(ws.root), "--map", "prompt=question",
                         "--map", "tags=kind", "--tag", "helpful", "--split", "eval")
    assert (code, out, err) == (0, f"1 new prompts from {tmp_path / 'p.csv'}\n", "")
    assert prompts(store) == [("eval", "q1", ["safety", "helpful"], "p.csv")]
    code, out, err = cli(capsys, "prompts", "import", str(tmp_path / "p.csv"), "-w", str(ws.root), "--map", "prompt=body")
    assert code == 2 and out == ""
    assert err == f"error: {tmp_path / 'p.csv'}: no column 'body' (--map prompt=body); its columns: question, kind\n"
    code, _, err = cli(capsys, "prompts", "import", str(tmp_path / "p.csv"), "-w", str(ws.root), "--map", "body")
    assert code == 2 and err == "error: --map body: expected KEY=COLUMN (keys: prompt, tags, split, reference)\n"
    code, _, err = cli(capsys, "prompts", "import", str(tmp_path / "p.csv"), "-w", str(ws.root), "--map", "chosen=kind")
    assert code == 2 and err.count("\n") == 1 and "'chosen' is not one of prompt, tags, split, reference" in err


def test_a_bad_row_anywhere_adds_nothing(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "fine"}, {"prompt": ""}]), tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"p.parquet row 2: `prompt` is empty$"):
        import_prompts(store, tmp_path / "p.parquet")
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "fine"}, {"prompt": user("q") + assistant("a")}])
    with pytest.raises(UserError, match=r"p.jsonl:2: the last message must be the user's"):
        import_prompts(store, tmp_path / "p.jsonl")
    assert prompts(store) == []


# ----------------------------------------------------------------------------- preferences


PREFS = [  # TRL's forms: standard explicit prompt, conversational explicit, conversational implicit
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "margin": 1.0},
    {"prompt": user("2+2?"), "chosen": assistant("4"), "rejected": assistant("5")},
    {"chosen": user("Hi") + assistant("Hello!"), "rejected": user("Hi") + assistant("Go away.")},
]


def test_preferences_import_each_trl_form_and_a_re_import_adds_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS)
    r = import_preferences(store, path, split="train")
    assert (r.source, r.head, r.added, r.present, r.ties, r.heldout) == ("prefs.jsonl", "helpful", 3, 0, 0, 0)
    assert pairs(store) == [
        ("prefs.jsonl", "helpful", user("Capital of France?"), "Paris.", "Lyon.", 1.0, "train"),
        ("prefs.jsonl", "helpful", user("2+2?"), "4", "5", 0.0, "train"),
        ("prefs.jsonl", "helpful", user("Hi"), "Hello!", "Go away.", 0.0, "train"),
    ]
    again = import_preferences(store, path, source="renamed")
    assert (again.added, again.present) == (0, 3)
    # Another head is another set of pairs.
    assert import_preferences(store, path, head="safety", split="heldout").added == 3
    assert len(pairs(store)) == 6


def test_preferences_with_full_conversations_and_an_explicit_prompt(store, tmp_path):
    # UltraFeedback's layout: the prompt as a string, chosen and rejected the whole conversation.
    from datasets import Dataset

    Dataset.from_list([{"prompt": "Q", "chosen": user("Q") + assistant("good"), "rejected": user("Q") + assistant("bad"),
                        "score": 3}]).save_to_disk(str(tmp_path / "uf"))
    assert import_preferences(store, tmp_path / "uf", split="train").added == 1
    assert pairs(store)[0][2:5] == (user("Q"), "good", "bad")


def test_preferences_mapping_ties_and_errors(store, tmp_path):
    (tmp_path / "p.csv").write_text("question,good,bad,m\nq1,a,b,0.5\nq2,same,same,\n")
    cols = {"prompt": "question", "chosen": "good", "rejected": "bad", "margin": "m"}
    r = import_preferences(store, tmp_path / "p.csv", columns=cols, split="train")
    assert (r.added, r.ties) == (1, 1) and pairs(store)[0][2:6] == (user("q1"), "a", "b", 0.5)
    with pytest.raises(UserError, match=r"p.csv: no column 'winner' \(--map chosen=winner\); "
                                        r"its columns: question, good, bad, m$"):
        import_preferences(store, tmp_path / "p.csv", columns={**cols, "chosen": "winner"})
    with pytest.raises(UserError, match=r"p.csv: no chosen column .* its columns: question, good, bad, m"):
        import_preferences(store, tmp_path / "p.csv")
    write_jsonl(tmp_path / "implicit.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(UserError, match=r"implicit.jsonl:1: no prompt column, and `chosen` is not a conversation"):
        import_preferences(store, tmp_path / "implicit.jsonl")
    write_jsonl(tmp_path / "apart.jsonl", [{"chosen": user("A") + assistant("x"), "rejected": user("B") + assistant("y")}])
    with pytest.raises(UserError, match=r"apart.jsonl:1: `chosen` and `rejected` must share every message but the last"):
        import_preferences(store, tmp_path / "apart.jsonl")
    with pytest.raises(UserError, match=r"--head must be helpful or safety, not 'honest'"):
        import_preferences(store, tmp_path / "p.csv", head="honest")
    assert len(pairs(store)) == 1


def test_the_held_out_split_is_by_prompt_and_a_prompt_never_changes_sides(store, tmp_path):
    rows = [{"prompt": f"q{i % 20}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(60)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    r = import_preferences(store, path, heldout_fraction=0.3, seed=7)
    assert r.added == 60 and 0 < r.heldout < 60
    sides: dict[str, set[str]] = {}
    for _, _, prompt, *_, sp in pairs(store):
        sides.setdefault(prompt[0]["content"], set()).add(sp)
    assert all(len(v) == 1 for v in sides.values()) and {"train", "heldout"} == set().union(*sides.values())
    # New pairs of a known prompt follow its side, whatever the fraction says.
    held = next(p for p, v in sides.items() if v == {"heldout"})
    write_jsonl(tmp_path / "more.jsonl", [{"prompt": held, "chosen": "new", "rejected": "pair"}])
    assert import_preferences(store, tmp_path / "more.jsonl", heldout_fraction=0.0).heldout == 1
    # An explicit split that would put a prompt on both sides is refused, and adds nothing.
    write_jsonl(tmp_path / "clash.jsonl", [{"prompt": held, "chosen": "other", "rejected": "pair"}])
    with pytest.raises(UserError, match=r"clash.jsonl: 1 train pair\(s\) have a prompt the helpful head already has "
                                        r"heldout pairs of \(line\(s\) 1\)"):
        import_preferences(store, tmp_path / "clash.jsonl", split="train")
    assert len(pairs(store)) == 61


def test_cli_preferences_import(ws, store, tmp_path, capsys):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS)
    code, out, err = cli(capsys, "preferences", "import", str(path), "-w", str(ws.root), "--head", "safety",
                         "--source", "hh", "--split", "heldout")
    assert (code, err) == (0, "") and out == f"3 new safety pairs from {path} as 'hh' (0 train, 3 held out)\n"
    code, out, _ = cli(capsys, "preferences", "import", str(path), "-w", str(ws.root), "--head", "safety")
    assert code == 0 and out.endswith("(0 train, 0 held out; 3 already present)\n")
    assert {(p[0], p[1], p[6]) for p in pairs(store)} == {("hh", "safety", "heldout")}
    code, _, err = cli(capsys, "preferences", "import", str(path), "-w", str(ws.root), "--split", "train",
                       "--heldout-fraction", "0.1")
    assert code == 2 and err == "error: give --split or --heldout-fraction, not both\n"
    code, _, err = cli(capsys, "preferences", "import", str(path), "-w", str(ws.root), "--map", "chosen=best")
    assert code == 2 and err == (f"error: {path}: no column 'best' (--map chosen=best); "
                                 "its columns: prompt, chosen, rejected, margin\n")


def test_read_source_limits_rows_and_refuses_a_dataset_split_for_a_plain_file(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": str(i)} for i in range(5)])
    table = read_source(path, limit=3)
    assert [n for n, _ in table.rows] == [1, 2, 3] and table.columns == ["prompt"]
    with pytest.raises(UserError, match=r"--dataset-split is for datasets"):
        read_source(path, dataset_split="train")
    with pytest.raises(UserError, match=r"--limit must be at least 1"):
        read_source(path, limit=0)
