"""pytest fixtures for editkit plugin authors (opt-in pytest plugin; nothing is autouse).

Enable it in a test module or the root ``conftest.py``::

    pytest_plugins = ["editkit.testing.fixtures"]

or on the command line / in ``addopts``: ``-p editkit.testing.fixtures``. Then::

    def test_my_constraint(editkit_run):
        outcome = editkit_run(constraints=["myconstraint", "nullspace"], plugins=[my_plugin])
        outcome.assert_edited()
        outcome.assert_preserved()
        outcome.assert_undo_exact()

Fixtures (all function-scoped; torch is imported inside them, not when the plugin loads):

* ``tiny_family`` — the model family, ``"gpt2"``; parametrise it directly
  (``@pytest.mark.parametrize("tiny_family", ["gpt2", "llama"])``) or ``tiny_model`` indirectly
  (``@pytest.mark.parametrize("tiny_model", ["qwen2"], indirect=True)``).
* ``tiny_dims`` — ``n_layers`` / ``d_model`` / ``d_mlp`` of the tiny model (override the fixture to change).
* ``tiny_tokenizer`` — a byte-level BPE trained in milliseconds on a built-in text.
* ``tiny_model`` — a random-initialised causal LM of that family (float32, logit scale 20 so edits are
  measurable).
* ``edit_requests`` — four valid :class:`~editkit.requests.EditRequest` whose prompts end with the subject.
* ``key_stats`` — an in-memory key-statistics provider for ``tiny_model``
  (:class:`~editkit.testing.moments.MomentsFromText`).
* ``plugin_manager`` — a factory: ``plugin_manager(*plugins)`` gives an isolated
  :class:`~editkit.plugins.PluginHost` with the first-party plugins and ``plugins``.
* ``editkit_run`` — a helper running a full edit in-process; returns an
  :class:`~editkit.testing.harness.EditOutcome` with ``assert_edited()``, ``assert_preserved(tol=...)``,
  ``assert_undo_exact()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover - typing only
    from editkit.plugins import PluginHost
    from editkit.requests import EditRequest
    from editkit.testing.harness import EditOutcome


@pytest.fixture
def tiny_family() -> str:
    """The model family of ``tiny_model`` (a ``model_type``); ``"gpt2"`` unless parametrised."""
    return "gpt2"


@pytest.fixture
def tiny_dims() -> dict[str, int]:
    """Layer count and widths of ``tiny_model`` (:data:`editkit.testing.tiny.TINY_DIMS`)."""
    from editkit.testing.tiny import TINY_DIMS

    return dict(TINY_DIMS)


@pytest.fixture
def tiny_tokenizer() -> Any:
    """A fast byte-level BPE tokenizer trained on a built-in text (no download)."""
    from editkit.testing.tiny import tiny_tokenizer as make

    return make()


@pytest.fixture
def tiny_model(request: pytest.FixtureRequest, tiny_family: str, tiny_tokenizer: Any, tiny_dims: dict[str, int]) -> Any:
    """A random-initialised causal LM of ``tiny_family`` (or of the indirect parameter), seed 0, logit scale 20."""
    from editkit.testing.tiny import tiny_model as make

    family = getattr(request, "param", tiny_family)
    return make(family, vocab_size=len(tiny_tokenizer), logit_scale=20.0, **tiny_dims)


@pytest.fixture
def edit_requests() -> list[EditRequest]:
    """Four valid edit requests; the prompts end with the subject (what edits a random model)."""
    from editkit.testing.tiny import tiny_requests

    return tiny_requests(4)


@pytest.fixture
def key_stats(tiny_model: Any, tiny_tokenizer: Any) -> Any:
    """Key statistics C0 of ``tiny_model`` from a small text, by explicit hooks (float64, in memory)."""
    from editkit.testing.moments import MomentsFromText
    from editkit.testing.tiny import tiny_texts

    return MomentsFromText(model=tiny_model, tokenizer=tiny_tokenizer, texts=tiny_texts())


@pytest.fixture
def plugin_manager() -> Callable[..., PluginHost]:
    """Factory of isolated plugin hosts: ``plugin_manager(*plugins, first_party=True)``.

    Holds the first-party ``architectures``, ``memit`` and ``nullspace`` plugins plus ``plugins``
    (modules or objects with catalog hooks, or ``(name, plugin)`` pairs); installed entry points and
    ``EDITKIT_DISABLE_PLUGINS`` play no part.
    """
    from editkit.testing.harness import plugin_host

    return plugin_host


@pytest.fixture
def editkit_run(tiny_model: Any, tiny_tokenizer: Any, edit_requests: list[EditRequest], key_stats: Any,
                plugin_manager: Callable[..., PluginHost]) -> Callable[..., EditOutcome]:
    """Run a full edit in-process and return its :class:`~editkit.testing.harness.EditOutcome`.

    ``editkit_run(editor="memit", constraints=(), plugins=(), overrides=None, requests=None, seed=0,
    batch_size=None, layers=None, constrain_mode=None, model=None, key_statistics=None)``

    Edits ``tiny_model`` in place with ``edit_requests`` and ``key_stats`` unless given others (with
    ``model`` and no ``key_statistics``, fresh statistics of that model are used); ``plugins`` join the
    first-party ones in an isolated host. Settings for tiny models
    (:func:`~editkit.testing.harness.tiny_overrides`) lie under ``overrides``.
    """
    from editkit.testing.harness import run_edit
    from editkit.testing.moments import MomentsFromText
    from editkit.testing.tiny import tiny_texts

    def run(
        *,
        editor: str = "memit",
        constraints: Sequence[str] = (),
        plugins: Sequence[object] = (),
        overrides: Mapping[str, str] | None = None,
        requests: Sequence[EditRequest] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        layers: Sequence[int] | None = None,
        constrain_mode: str | None = None,
        model: Any = None,
        key_statistics: Any = None,
    ) -> EditOutcome:
        target = tiny_model if model is None else model
        if key_statistics is None:
            key_statistics = key_stats if model is None else MomentsFromText(
                model=model, tokenizer=tiny_tokenizer, texts=tiny_texts())
        chosen = list(edit_requests if requests is None else requests)
        return run_edit(model=target, tokenizer=tiny_tokenizer, requests=chosen,
                        key_statistics=key_statistics, host=plugin_manager(*plugins), editor=editor,
                        constraints=constraints, overrides=overrides, seed=seed, batch_size=batch_size,
                        layers=layers, constrain_mode=constrain_mode)

    return run
