"""Untrusted text to inert Markdown."""

from __future__ import annotations

import re

import pytest

from annotation.render import ZWSP, conversation_markdown, safe_markdown

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<a href='javascript:alert(1)'>x</a>",
    "[x](javascript:alert(1))",
    "![x](http://127.0.0.2:9/x.png)",
    "[r]: http://127.0.0.2:9/r.png\n\n![r]",
    "<http://127.0.0.2:9/auto>",
    "```\n<script>alert(1)</script>\n```",
    "<!-- c --><?php ?><![CDATA[x]]>",
    "bare http://127.0.0.2:9/phish, HTTPS://127.0.0.2/x and ftp://127.0.0.2/f",
    "hosts www.example.com and WwW.example.com",
    "mail bob@example.com or mailto:bob@example.com",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_tag_link_or_image_can_form(text: str) -> None:
    out = safe_markdown(text)
    assert out.replace(ZWSP, "") == text  # every character stays visible
    assert not re.search(r"<[A-Za-z/!?]", out)  # no tag, closing tag, comment, declaration or autolink
    assert "](" not in out and "]:" not in out  # no inline link/image, no reference definition
    assert not re.search(r"://|www\.|@[A-Za-z0-9]", out, re.IGNORECASE)  # no bare URL, host or address to autolink


def test_mermaid_fences_lose_their_renderer_and_prompts_are_labelled() -> None:
    assert "mermaid" not in safe_markdown("```mermaid\ngraph TD; A-->B\n```").split("\n")[0].replace(ZWSP + "m", "")
    md = conversation_markdown([{"role": "user", "content": "hi <b>"}, {"role": "<i>x", "content": "y"}])
    assert md.startswith("**User:**") and "<" + ZWSP + "b>" in md and "<" + ZWSP + "i>x" in md
    assert safe_markdown("plain **bold** `code`") == "plain **bold** `code`"
