"""Model output as inert Markdown.

Candidates and prompts are untrusted: a model (or whoever wrote a prompt file) can emit
`<script>`, `<img src=... onerror=...>`, `javascript:` links or images on remote hosts.
They are shown with Gradio's sanitized Markdown after this pass, which keeps every
character visible but lets no HTML, image or link form:

- a zero-width space after every `<`: no tag, comment or autolink can start, in code
  blocks as in text, so the pass needs no Markdown parser of its own (whose idea of
  where a code block ends could differ from the browser's);
- the same after `]` before `(` or `:`: no inline link or image, and no link reference
  definition, so reference-style links and images stay text too;
- the same inside `://`, after `www` before `.` and after `@`: GitHub-flavoured Markdown
  turns bare URLs, `www.` hosts and e-mail addresses into links (a phishing link one
  click away), and these are the characters its autolink rules need side by side;
- diagram fences (`mermaid`) lose their language, so no renderer runs on them.

The Content-Security-Policy the app sends is the second line of defence.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
_BARE_LINK = re.compile(r"(:(?=//)|(?i:www)(?=\.)|@)")
_FENCE_LANG = re.compile(r"(?m)^(\s*(?:`{3,}|~{3,})\s*)(mermaid)", re.IGNORECASE)
ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def safe_markdown(text: str) -> str:
    """`text` with every HTML, link and image construct made inert (see the module doc)."""
    out = str(text).replace("\r\n", "\n").replace("\r", "\n")
    out = out.replace("<", "<" + ZWSP)
    out = out.replace("](", "]" + ZWSP + "(").replace("]:", "]" + ZWSP + ":")
    out = _BARE_LINK.sub(lambda m: m.group(1) + ZWSP, out)
    return _FENCE_LANG.sub(lambda m: m.group(1) + ZWSP + m.group(2), out)


def conversation_markdown(messages: list[dict]) -> str:
    """A prompt's messages, each under its role, as inert Markdown."""
    parts = []
    for m in messages:
        role = str(m.get("role", ""))
        label = ROLES.get(role, safe_markdown(role) or "?")
        parts.append(f"**{label}:**\n\n{safe_markdown(str(m.get('content', '')))}")
    return "\n\n---\n\n".join(parts)
