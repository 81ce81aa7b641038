"""Command-line error handling shared by every entry point: bad input gives one clear line.

A wrong task, router, profile, model path, option or tracking URI is the user's to fix, so it is printed as
`error: <what was wrong and what to do>` with exit status 2 instead of a traceback. Set
LONDI_DEBUG=1 to get the traceback anyway. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """Base of the harness's own user errors (an unknown task, an unreachable tracking store): the message says
    what was wrong and what to do."""


USER_ERRORS = (UserError, ValueError, FileNotFoundError)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as error:
        if os.environ.get("LONDI_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
