"""One exception type for problems a user can fix, and the one place that turns it into an exit."""

import functools
import sys


class TwoTowerError(Exception):
    """Bad input or configuration: shown to the user as one line, never as a traceback."""


def exit_on_error(main):
    """Wrap a command's `main` so a TwoTowerError prints `error: ...` and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except TwoTowerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper
