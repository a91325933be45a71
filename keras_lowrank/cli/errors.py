"""The error type for mistakes a user can fix: reported in one line, exit 2."""


class CLIError(Exception):
    """A user error: printed as one line without a traceback, exit code 2."""
