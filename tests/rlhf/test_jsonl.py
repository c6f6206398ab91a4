import pytest

from rlhf.core.errors import UserError
from rlhf.core.jsonl import messages_of, prompt_messages, read_jsonl, write_jsonl


def test_malformed_line_is_named(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"messages": []}\n\n{"messages": [oops]}\n')
    with pytest.raises(UserError, match=r"x.jsonl:3: not valid JSON"):
        read_jsonl(p)


def test_messages_are_validated():
    with pytest.raises(UserError, match=r"messages\[0\]"):
        messages_of({"messages": [{"role": "robot", "content": "hi"}]}, "f:1")


def test_line_and_paragraph_separators_stay_inside_their_string(tmp_path):
    p = tmp_path / "x.jsonl"
    rows = [{"text": "a\u2028b\u2029c\x85d\x0be\x1cf"}, {"text": "next"}]
    write_jsonl(p, rows)
    assert read_jsonl(p) == rows
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    assert read_jsonl(p) == rows


def test_a_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    assert read_jsonl(p) == [{"a": 1}]


def test_a_folder_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match=r"is a folder, not a JSONL file"):
        read_jsonl(tmp_path)


def test_a_prompt_ends_with_the_users_turn():
    assert prompt_messages({"messages": [{"role": "user", "content": "hi"}]}, "f:1")
    with pytest.raises(UserError, match=r"f:1: the last message must be the user's"):
        prompt_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
                        "f:1")
