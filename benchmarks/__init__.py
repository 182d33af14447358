"""Speed and memory measurements (not part of the package or the tests).

Each ``bench_*`` module runs from the repository root as
``python -m benchmarks.bench_NAME``, which puts the root on ``sys.path``
for ``pspnet``, ``tests.helpers`` and this package's helpers; see
benchmarks/README.md. This file imports nothing: some benchmarks set
OpenBLAS's environment before numpy is first imported.
"""
