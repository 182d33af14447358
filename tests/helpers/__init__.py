"""Test-only code that generates what the tests run on: small datasets in
the real on-disk layouts (:mod:`tests.helpers.dataset_factory`), random
PSPNet weights and images that make comparisons sensitive
(:mod:`tests.helpers.random_weights`), and synthetic caffemodels in the
layout of PSPNet's released files (:mod:`tests.helpers.caffemodel_factory`).

Not part of the package. The benchmarks (``benchmarks/``), the checks
against ChainerCV (``crosscheck/``) and ``tools/gpu/gpu_check.sh`` use it
too; they run from the repository root (``python -m ...``), which puts the
root on ``sys.path``.
"""
