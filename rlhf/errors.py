"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


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
