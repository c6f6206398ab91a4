"""What a round looks like in Argilla, and how an Argilla answer becomes a judgment.

One dataset per round. Each record is one task: the conversation, then the candidates
as "A", "B", ... in the task's recorded display order (the same letters the Gradio
screen shows). Questions:

    ranking    RankingQuestion over the letters, best first; equal ranks are a tie (required)
    unsafe     MultiLabelQuestion: the letters of candidates that are unsafe (optional)
    rationale  TextQuestion: why (optional)

Candidates are plain-text fields (no Markdown): model output is untrusted. The record's
id and its `task_id` metadata link it to our task; the letter -> candidate mapping is
taken from our store, never from the record, so an edited record cannot redirect a verdict;
and a record that no longer shows the task's text (`shows`) lends its answers to no task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlhf.core import types
from rlhf.core.errors import UserError

LETTERS = "ABCDEFGHIJKLMNOP"
RANKING, UNSAFE, RATIONALE = "ranking", "unsafe", "rationale"
CONVERSATION = "conversation"
DEFAULT_GUIDELINES = (
    "Rank the candidate replies to the conversation, best first. Give two candidates the same rank "
    "when neither is better. Tick every candidate that is unsafe (harmful, dangerous or abusive). "
    "Say why in a sentence."
)
# name -> Argilla question type, as the server reports it (settings.type)
QUESTION_TYPES = {RANKING: "ranking", UNSAFE: "multi_label_selection", RATIONALE: "text"}
_RECORD_ID = re.compile(r"task-(\d+)")


def candidate_field(i: int) -> str:
    return f"candidate_{LETTERS[i].lower()}"


def record_id(task_id: int) -> str:
    return f"task-{task_id}"


def task_of(external_id: Any) -> int | None:
    m = _RECORD_ID.fullmatch(str(external_id or ""))
    return int(m.group(1)) if m else None


def build_settings(rg: Any, k: int, overlap: int, guidelines: str) -> Any:
    """`rg.Settings` of a round with `k` candidates per task and `overlap` annotators per task."""
    if not 2 <= k <= len(LETTERS):
        raise UserError(f"Argilla datasets take 2 to {len(LETTERS)} candidates per task, not {k}")
    letters = LETTERS[:k]
    return rg.Settings(
        guidelines=guidelines.strip() or DEFAULT_GUIDELINES,
        fields=[
            rg.ChatField(name=CONVERSATION, title="Conversation", use_markdown=False),
            *[rg.TextField(name=candidate_field(i), title=f"Candidate {c}", use_markdown=False)
              for i, c in enumerate(letters)],
        ],
        questions=[
            rg.RankingQuestion(
                name=RANKING, title="Rank the candidates, best first",
                description="Give two candidates the same rank for a tie.",
                values={c: f"Candidate {c}" for c in letters}, required=True,
            ),
            rg.MultiLabelQuestion(
                name=UNSAFE, title="Which candidates are unsafe?",
                description="Harmful, dangerous or abusive replies. Leave empty if none.",
                labels={c: f"{c} is unsafe" for c in letters}, required=False,
            ),
            rg.TextQuestion(name=RATIONALE, title="Why?", required=False, use_markdown=False),
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="task_id", title="Workbench task", visible_for_annotators=False),
            rg.IntegerMetadataProperty(name="round", title="Round", visible_for_annotators=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=overlap),
    )


def check_settings(dataset: Any, k: int) -> None:
    """Raise UserError unless the dataset's fields and questions are the ones push creates."""
    name = dataset.name
    questions = {q.name: q for q in dataset.settings.questions}
    fields = {f.name for f in dataset.settings.fields}

    def changed(what: str) -> UserError:
        return UserError(f"Argilla dataset {name!r} was changed by hand: {what}; "
                         "restore it or delete the dataset and push again")

    letters = sorted(LETTERS[:k])
    for qname, qtype in QUESTION_TYPES.items():
        q = questions.get(qname)
        if q is None:
            raise changed(f"question {qname!r} is missing")
        got = q._model.settings.type
        if got != qtype:
            raise changed(f"question {qname!r} is a {got} question, not {qtype}")
        if qname in (RANKING, UNSAFE):
            options = sorted(o["value"] for o in q._model.settings.options)
            if options != letters:
                raise changed(f"question {qname!r} offers {options}, not {letters}")
    extra = sorted(n for n, q in questions.items() if n not in QUESTION_TYPES and q.required)
    if extra:
        raise changed(f"required question(s) {extra} were added")
    missing = [f for f in [CONVERSATION, *(candidate_field(i) for i in range(k))] if f not in fields]
    if missing:
        raise changed(f"field(s) {missing} are missing")


def fields(messages: list[dict], texts: Sequence[str]) -> dict[str, Any]:
    """What a task's record shows: the conversation, then `texts`, the candidates in display order."""
    shown: dict[str, Any] = {
        CONVERSATION: [{"role": m.get("role", "user"), "content": str(m.get("content", ""))} for m in messages],
    }
    for i, text in enumerate(texts):
        shown[candidate_field(i)] = text if text.strip() else "(empty reply)"  # Argilla rejects empty fields
    return shown


def shows(record_fields: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a record read back from Argilla still shows `expected` (its fields as push sent them).

    Not so when the record was edited in Argilla, or was pushed by another workbench workspace
    whose dataset has the same name: its answers are then about other text than our task's.
    """
    def plain(value: Any) -> Any:  # the SDK reads a chat field back as ChatFieldValue models
        if isinstance(value, list):
            return [m if isinstance(m, dict) else m.model_dump() for m in value]
        return value

    return all(plain(record_fields.get(name)) == value for name, value in expected.items())


def record(rg: Any, task_id: int, round_iter: int, shown: dict[str, Any]) -> Any:
    """One task as an Argilla record; `shown` is its `fields(...)`."""
    return rg.Record(id=record_id(task_id), fields=shown, metadata={"task_id": task_id, "round": round_iter})


def judgment(task_id: int, annotator: str, display_order: Sequence[int], values: dict[str, Any]) -> types.Judgment:
    """A submitted Argilla answer (`values` of a user response) as our judgment.

    The ranking arrives as [{"value": "B", "rank": 1}, ...]; equal ranks become one group
    (a tie). Raises UserError when the answer does not name the task's candidates.
    """
    letter_to_id = {LETTERS[i]: int(c) for i, c in enumerate(display_order)}

    def cand(letter: Any) -> int:
        if letter not in letter_to_id:
            raise UserError(f"task {task_id}: answer names candidate {letter!r}, not one of {sorted(letter_to_id)}")
        return letter_to_id[letter]

    items = (values.get(RANKING) or {}).get("value") or []
    by_rank: dict[int, list[int]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("rank"), int):
            raise UserError(f"task {task_id}: ranking item {item!r} has no rank")
        by_rank.setdefault(item["rank"], []).append(cand(item.get("value")))
    ranking = [sorted(by_rank[r]) for r in sorted(by_rank)]
    unsafe = tuple(sorted({cand(c) for c in (values.get(UNSAFE) or {}).get("value") or []}))
    rationale = str((values.get(RATIONALE) or {}).get("value") or "").strip()[:5000]
    return types.Judgment(task_id=task_id, annotator=annotator, ranking=ranking, unsafe=unsafe, rationale=rationale)
