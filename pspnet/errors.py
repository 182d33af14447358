"""User-facing errors.

Every problem a user can fix (a missing file, weights that do not fit the
model, a bad flag) is raised as :class:`UserError` with a one-line message
that names the problem and the fix. The scripts print that line and exit
with status 2 instead of showing a traceback (:mod:`pspnet.cli`).
"""


class UserError(ValueError):
    """An error caused by user input, with a one-line, actionable message."""
