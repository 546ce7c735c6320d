"""Exceptions lightray raises for bad input."""


class MisconfigurationError(ValueError):
    """A setting, a hook's return value or a call does not fit what lightray expects.

    The message names the problem and the fix.
    """


class PossibleUserWarning(UserWarning):
    """A warning about something that is probably, not certainly, a mistake (Lightning's name)."""


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)`` (Python 3.11+: shown under the traceback); on 3.10 the note is kept in ``__notes__``."""
    if hasattr(error, "add_note"):
        error.add_note(note)
    else:
        error.__notes__ = [*getattr(error, "__notes__", ()), note]  # type: ignore[attr-defined]


class TunerExit(Exception):
    """Raised by ``LearningRateFinder``/``BatchSizeFinder`` when ``lightray.tuner.Tuner`` drives them: the search
    ran in ``on_fit_start`` and the fit that carried it ends there (teardown hooks, no training)."""
