"""User-facing errors.

Every problem a user can fix (a missing file, weights that do not fit the
model, a bad flag) is raised as :class:`UserError` with a one-line message
that names the problem and the fix. The scripts print that line and exit
with status 2 instead of showing a traceback.
"""

import functools
import sys


class UserError(ValueError):
    """An error caused by user input, with a one-line, actionable message."""


def exit_on_user_error(main):
    """Decorate a script's ``main`` so a :class:`UserError` ends the process
    with ``error: <message>`` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print('error: {}'.format(e), file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print('interrupted', file=sys.stderr)
            sys.exit(130)
    return wrapper
