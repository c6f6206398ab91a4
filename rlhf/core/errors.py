"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input: a config value, a path, a file, a command-line argument."""

    exit_code = 2


class WaitingForHumans(Exception):
    """The annotate stage's quota is not met yet; the round resumes when run again."""

    exit_code = 75


def validation_details(errors: list[dict], limit: int = 20) -> list[dict]:
    """Pydantic's complaints about a request, as an HTTP API answers them: where, what, which kind.

    Never the offending `input`: echoing it back would return a huge request in the error, a
    password typed into the wrong field, or a NaN or 1e400 that JSON cannot encode (a 500).
    """
    return [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors[:limit]]


@contextmanager
def _user_file(path: Path, kind: str, missing: str, verb: str) -> Iterator[None]:
    """Each way a file the user named cannot be read or written, as one UserError line (Python
    raises a different OSError for each)."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {kind}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot {verb} it ({err.strerror})") from None


def read_user_text(path: Path, kind: str = "file", missing: str = "no such file", encoding: str = "utf-8") -> str:
    """The text of a file the user named (a `kind` of file)."""
    with _user_file(path, kind, missing, "read"):
        return Path(path).read_text(encoding=encoding)


def write_user_text(path: Path, text: str, kind: str = "file") -> None:
    """Write a file the user named (a `kind` of file)."""
    path = Path(path)
    with _user_file(path, kind, f"no such folder {path.parent}", "write"):
        path.write_text(text, encoding="utf-8")
