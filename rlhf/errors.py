"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input: a config value, a path, a file, a command-line argument."""

    exit_code = 2


class WaitingForHumans(Exception):
    """The annotate stage's quota is not met yet; the round resumes when run again."""

    exit_code = 75
