"""Checks of the project against ChainerCV 0.13.1 (not part of the tests).

Each module runs with a Python that has Chainer 7.8.1 and ChainerCV 0.13.1
(here ``/tmp/oracle-venv``), from the repository root, as
``python -m crosscheck.NAME``; see crosscheck/README.md.
"""
