"""Test support for editkit and for plugin authors. Importing it imports neither torch nor pytest.

* :mod:`editkit.testing.tiny` — tiny random models of many families, a tokenizer trained in
  milliseconds, background texts and valid edit requests (no downloads);
* :mod:`editkit.testing.moments` — :class:`~editkit.testing.moments.MomentsFromText`, an in-memory
  key-statistics (C0) provider, and :class:`~editkit.testing.moments.KnownSpectrum`, C0 with a chosen spectrum;
* :mod:`editkit.testing.harness` — isolated plugin hosts, :func:`~editkit.testing.harness.run_edit` and
  :class:`~editkit.testing.harness.EditOutcome` (``assert_edited``, ``assert_preserved``, ``assert_undo_exact``);
* :mod:`editkit.testing.fixed` — :func:`~editkit.testing.fixed.fixed_editor_plugin`, an editor that writes given
  updates, to test a constraint inside the real kernel;
* :mod:`editkit.testing.fixtures` — the opt-in pytest plugin (``pytest_plugins = ["editkit.testing.fixtures"]``
  or ``-p editkit.testing.fixtures``);
* :mod:`editkit.testing.conformance` — the hook-contract conformance suite
  (``TestX = make_conformance_tests(plugin=..., constraint=...)``).

See ``docs/writing-a-plugin.md``.
"""
