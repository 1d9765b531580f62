"""Error types for mistakes a user can fix: a bad setting, bad data.

ctcseq raises these (never a bare ``ValueError``) when the cause lies
outside the program: an impossible option, a file that is not what it
should be, a transcript that does not fit its audio.  Their messages name
the setting or the file and say what was expected.

The command line (:mod:`ctcseq.cli`) prints a :class:`CtcseqError` as one
line on stderr and exits with status 2; any other exception is a bug in
ctcseq and keeps its traceback (``ctcseq --debug ...`` shows the traceback of
user errors too).

Both concrete types subclass ``ValueError``, so code written against the
documented "raises ValueError" of the library keeps working::

    try:
        model = CTCModel.load(path)
    except ValueError as e:        # also catches DataError
        ...
"""
from __future__ import annotations

__all__ = ["CtcseqError", "UserError", "DataError"]


class CtcseqError(Exception):
    """Base of the errors that describe a user's mistake or bad input data
    (as opposed to a bug in ctcseq)."""


class UserError(CtcseqError, ValueError):
    """A setting, option or argument that cannot work (e.g. ``--stride 0``,
    resuming a run with other settings)."""


class DataError(CtcseqError, ValueError):
    """Input data or a file that is malformed, of the wrong kind or
    inconsistent (e.g. an LM file given as a model, a transcript that needs
    more frames than its audio has); the message names the file or the
    sequence."""
