"""Keep the README's config reference in step with rlhf/pipeline/config.py: `python -m rlhf.cli.readme_sync`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rlhf.pipeline.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def synced(text: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    return pattern.sub(f"{START}\n{reference_markdown()}\n{END}", text)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("README.md")
    path.write_text(synced(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
