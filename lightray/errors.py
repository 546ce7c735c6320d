"""Exceptions lightray raises for bad input."""


class MisconfigurationError(ValueError):
    """A setting, a hook's return value or a call does not fit what lightray expects.

    The message names the problem and the fix.
    """


class PossibleUserWarning(UserWarning):
    """A warning about something that is probably, not certainly, a mistake (Lightning's name)."""
