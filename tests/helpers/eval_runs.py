"""eval_semantic_segmentation.py as a user runs it, on one process or
under mpiexec."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
# One BLAS thread in every process, so that one process and two compute
# with the same arithmetic.
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')


def run_eval(argv, mpi=0, timeout=300):
    """The finished run of the script with ``argv`` (on ``mpi`` processes
    of mpiexec when not 0): a ``subprocess.CompletedProcess`` with its
    text output."""
    command = [sys.executable, os.path.join(REPO,
                                            'eval_semantic_segmentation.py')]
    if mpi:
        command = [MPIEXEC, '-n', str(mpi)] + command
    return subprocess.run(command + argv, cwd=REPO, env=ENV, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
