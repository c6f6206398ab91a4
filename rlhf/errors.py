"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

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


def read_user_text(path: Path, kind: str = "file", missing: str = "no such file", encoding: str = "utf-8") -> str:
    """The text of a file the user named (a `kind` of file); each way it cannot be read is one
    UserError line, where Python would raise a different OSError for each."""
    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {kind}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None


def write_user_text(path: Path, text: str, kind: str = "file") -> None:
    """Write a file the user named (a `kind` of file); each way it cannot be written is one UserError line."""
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such folder {path.parent}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {kind}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot write it ({err.strerror})") from None
