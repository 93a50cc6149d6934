"""Mistakes in what a user gave (data, folders, settings), told in one line.

:class:`InputError` marks an error whose message already says which file,
row or key is at fault and what to do. A recipe's ``train.py`` runs inside
:func:`reported_input_errors`, which prints such a message as one line
and exits with status 1 (the trace goes to the debug log); any other
exception, a bug, keeps its traceback.

Authors
 * speechbrain-turbo contributors
"""

import contextlib
import os
import sys

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class InputError(ValueError):
    """A user's mistake in the data, the folders or the settings; its
    message names what is at fault and what to do.
    """


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user pointed at is not there (or not where the
    corpus' layout puts it); the message says where it was looked for.
    """


@contextlib.contextmanager
def reported_input_errors():
    """Turns an :class:`InputError` into a one-line message and exit 1.

    Example
    -------
    >>> with reported_input_errors():  # doctest: +ELLIPSIS
    ...     raise InputError("m.csv line 3: empty ID; give every row an ID")
    Traceback (most recent call last):
    ...
    SystemExit: ...: m.csv line 3: empty ID; give every row an ID
    """
    try:
        yield
    except InputError as error:
        logger.debug("The trace of the error below", exc_info=True)
        program = os.path.basename(sys.argv[0]) or "python"
        raise SystemExit(f"{program}: {error}") from None
