"""The ``editkit`` command line (see :mod:`editkit.cli.main`)."""
