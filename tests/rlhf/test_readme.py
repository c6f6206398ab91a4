from pathlib import Path

from rlhf.cli.readme_sync import synced

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_is_current():
    text = README.read_text()
    assert synced(text) == text, "README config reference is stale: run `python -m rlhf.cli.readme_sync`"


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
