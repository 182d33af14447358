"""Tools of the repository (not part of the package): the Winograd codelet
generator, run as ``python -m tools.gen_winograd_codelets`` from the
repository root, and the GPU machine's scripts in ``tools/gpu/``."""
