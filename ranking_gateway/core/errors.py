"""Exceptions that cross module boundaries and map to user-facing answers."""


class CliError(Exception):
    """A user-facing failure of a command: printed as one line, exit status 2, no traceback."""


class BackendUnavailable(Exception):
    """Triton (or another serving dependency) cannot answer: the API turns this into a 503."""
