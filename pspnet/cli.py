"""The scripts' command-line frame: argument parsing with ``--version``,
and the one-line exit for user errors.

Every script parses its flags with :class:`ArgumentParser` (a bad flag is
one ``error:`` line, exit status 2, printed once under ``mpiexec``) and
wraps its ``main`` in :func:`exit_on_user_error` (a
:class:`~pspnet.errors.UserError` is one ``error:`` line, exit status 2,
no traceback). Failing together under MPI is :mod:`pspnet.mpi`'s
``run_collectively`` and ``before_mpi``.
"""

import argparse
import functools
import os
import sys

import chainer

import pspnet
from pspnet.errors import UserError
from pspnet.mpi import launcher_rank


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


def version_line(prog):
    """``PROG (pspnet X, Chainer Y)``: what ``--version`` prints."""
    return '{} (pspnet {}, Chainer {})'.format(
        os.path.basename(prog), pspnet.__version__, chainer.__version__)


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` (once under mpiexec) and
    exit with status 0."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS,
                 default=argparse.SUPPRESS, help=None):
        super(_VersionAction, self).__init__(
            option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        if launcher_rank() == 0:
            print(version_line(parser.prog))
        parser.exit()


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser that reports a bad flag in one ``error:`` line
    (exit status 2), like every other user error, and has ``--version``."""

    def __init__(self, *args, **kwargs):
        super(ArgumentParser, self).__init__(*args, **kwargs)
        self.add_argument('--version', action=_VersionAction,
                          help='print the versions of this script\'s pspnet '
                          'and Chainer and exit')

    def error(self, message):
        # Under mpiexec every process parses the same flags: one says so.
        if launcher_rank() == 0:
            print('error: {}; see python {} --help'.format(
                message, os.path.basename(self.prog)), file=sys.stderr)
        sys.exit(2)
