import pytest

from rlhf.errors import UserError
from rlhf.jsonl import messages_of, read_jsonl


def test_malformed_line_is_named(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"messages": []}\n\n{"messages": [oops]}\n')
    with pytest.raises(UserError, match=r"x.jsonl:3: not valid JSON"):
        read_jsonl(p)


def test_messages_are_validated():
    with pytest.raises(UserError, match=r"messages\[0\]"):
        messages_of({"messages": [{"role": "robot", "content": "hi"}]}, "f:1")
