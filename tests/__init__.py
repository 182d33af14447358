"""The project's tests (pytest). A regular package, so that
``tests.helpers`` is this folder's and not a ``tests`` package that some
wheel installed into site-packages."""
