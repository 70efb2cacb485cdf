"""User-facing errors: a bad config, missing data or weights. Entry points print them as one line, no traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and what would be valid."""


def report_user_errors(main):
    """Exit with the one-line message of a UserError (set HYDRA_FULL_ERROR=1 for the traceback)."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            log_to_files(f"error: {e}")
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)  # SystemExit passes through Hydra's own exception reporting
    return wrapper


def log_to_files(message: str) -> None:
    """Write message to the root logger's log files (Hydra's <job>.log in the run directory) only: the console
    gets the one stderr line, not a second copy through Hydra's console handler."""
    root = logging.getLogger()
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
