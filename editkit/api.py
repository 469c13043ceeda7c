"""The plugin API: everything a method author may import from editkit, in one place.

A plugin (an editor, a constraint, a dataset, a metric, a model source, a command) imports kernel names
from this module only::

    from editkit.api import ConstraintSpec, DeltaProposal, RunContext, Site, hookimpl

Every other module of the ``editkit`` package is internal: it may change without notice, and
``tests/unit/test_plugin_api.py`` fails when a first-party plugin (``plugins/``) or the third-party
example (``plugins/editkit-normclamp``) imports from one. Tests of a plugin may also use
:mod:`editkit.testing`.

Importing this module does not import torch: the names that need it (proposals, tokenising, tracing,
scoring, ...) are loaded on first access, as :mod:`editkit` does, so a plugin's catalog module stays
light (``editkit --help`` and ``editkit plugins`` import it).

What is here, by use:

* **Registering** (catalog hooks): :func:`hookimpl`, the specs :class:`EditorSpec`, :class:`ConstraintSpec`,
  :class:`ArchitectureSpec`, :class:`DatasetSpec`, :class:`MetricSpec`, :class:`CommandSpec`,
  :class:`ModelSpec`; the errors :class:`UsageError` (a bad option or setting), :class:`InputError`
  (a bad input file or record), :class:`NumericalError`, :class:`EditkitError`.
* **The hook contract** (stage hooks, see :mod:`editkit.hookspecs`): :class:`RunContext` (what a stage
  hook may use of the run), :class:`EditBatch`, :class:`EditRequest`, :class:`Site`, :class:`ModelLayout`,
  the proposals :class:`TargetProposal`, :class:`SolveProblem`, :class:`DeltaProposal`,
  :class:`AccumulatedProposal` (any of them: ``Proposal``),
  the row :class:`Subspace`, :class:`UndoRecord`, :class:`KeyStatisticsView` (what
  ``run.require_key_statistics()`` gives), :class:`Progress` / :class:`Task`.
* **Tokenising prompts around a subject**: :func:`tokenize` (ids, character offsets, special-token flags),
  :func:`last_token_before` (e.g. the subject's last token), :func:`first_token_from` (e.g. a target's first
  token), :func:`pad_batch` (a padded batch with explicit position ids), :func:`max_positions` (the model's
  context), :func:`clip_left` (cut a context from the left to fit).
* **Capturing and changing a module's inputs and outputs**: :func:`capture_inputs`, :func:`capture_outputs`,
  :func:`run_until_stopped` (stop the forward pass after the last captured module; a hook may raise
  :class:`StopForward` to end it), :func:`edit_output`
  (replace a module's output), :func:`added_update` (the model computes as if ``W + Δ``, nothing written),
  :func:`fused_activations` (exact fused activations while optimising), :func:`cache_argument` /
  :func:`cache_of` (a model's key/value cache argument and result).
* **Scoring and generating** (metrics): :class:`EvalContext`, :func:`metric_options`,
  :func:`continuation_scores` (log-probabilities of target continuations), :func:`fitting` (which prompts
  fit the context), :func:`sample_continuations`, :func:`greedy_completions`, :func:`starts_with`,
  :func:`spectrum_profile` (a compact eigenvalue profile for notes).
* **Files**: :func:`write_atomic`, :func:`write_json_atomic`, :func:`write_directory_atomic` (never a
  half-written output), :func:`cache_root` / :data:`CACHE_ENV` (editkit's cache directory),
  :func:`file_sha256`, :func:`request_from_record` (a CounterFact-style record → :class:`EditRequest`),
  :func:`lazy_attributes` (keep a plugin package's import torch-free).
* **Memory**: :func:`release_free_memory` (hand the heap's free pages back to the system between parts of a
  stage; the kernel does it as each stage ends).

Orientation: every matrix handed through the stage hooks is in *math layout*, ``v = W k`` with ``W``
``[d_out, d_in]``; :meth:`Site.to_math` / :meth:`Site.to_storage` convert a module's stored weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from editkit.allocator import release_free_memory
from editkit.catalog import (
    ArchitectureSpec,
    CommandSpec,
    ConstraintSpec,
    DatasetSpec,
    EditorSpec,
    MetricSpec,
    ModelSpec,
)
from editkit.errors import EditkitError, InputError, NumericalError, UsageError
from editkit.evaluation import EvalContext
from editkit.helpers.atomic import write_atomic, write_directory_atomic, write_json_atomic
from editkit.helpers.cachedir import CACHE_ENV, cache_root
from editkit.helpers.completions import greedy_completions, starts_with
from editkit.helpers.kvcache import cache_argument, cache_of
from editkit.helpers.metricoptions import metric_options
from editkit.helpers.progress import Progress, Task
from editkit.job.manifest import file_sha256
from editkit.layout import ModelLayout
from editkit.lazy import lazy_attributes
from editkit.markers import hookimpl
from editkit.requests import EditRequest, request_from_record
from editkit.sites import Site

if TYPE_CHECKING:  # pragma: no cover - typing only; at run time these load on first access (_LAZY)
    import torch

    from editkit.helpers.activations import fused_activations
    from editkit.helpers.contextwindow import clip_left, fitting, max_positions
    from editkit.helpers.generation import sample_continuations
    from editkit.helpers.scoring import continuation_scores
    from editkit.helpers.tokens import (
        PaddedBatch,
        TokenizedText,
        first_token_from,
        last_token_before,
        pad_batch,
        tokenize,
    )
    from editkit.helpers.tracing import (
        StopForward,
        added_update,
        capture_inputs,
        capture_outputs,
        edit_output,
        run_until_stopped,
    )
    from editkit.keystats.spectrum import spectrum_profile
    from editkit.requests import EditBatch
    from editkit.updates import (
        AccumulatedProposal,
        DeltaProposal,
        Proposal,
        SolveProblem,
        Subspace,
        TargetProposal,
        UndoRecord,
    )


@runtime_checkable
class KeyStatisticsView(Protocol):
    """The key statistics (``C0``) of the unedited model, as ``run.require_key_statistics()`` returns them."""

    def second_moment(self, site: Site) -> torch.Tensor:
        """``C0 = (1/N) Σ_t k_t k_tᵀ`` of the site's keys over the background corpus, float64 ``[d_in, d_in]``."""
        ...

    def eigendecomposition(self, site: Site) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eigenvalues [d_in] ascending, eigenvectors [d_in, d_in])`` of ``C0``, float64, cached."""
        ...


@runtime_checkable
class RunContext(Protocol):
    """What a stage hook may use of the run it is called for (the ``run`` argument of every stage hook).

    The kernel's :class:`editkit.run.EditRun` implements it; a plugin relies on nothing else of the run.
    Members are read-only for plugins, except the contents of :attr:`state` (per-run plugin state that a
    resumed run restores).
    """

    @property
    def model(self) -> torch.nn.Module:
        """The causal LM being edited, in eval mode, ``requires_grad`` off (a ``transformers`` model)."""
        ...

    @property
    def tokenizer(self) -> Any:
        """Its tokenizer (a ``transformers`` tokenizer)."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the model runs; put the tensors you compute with on it."""
        ...

    @property
    def layout(self) -> ModelLayout:
        """Where the model's blocks, MLP output projections and final norm are (``layout.site(layer)``)."""
        ...

    @property
    def sites(self) -> tuple[Site, ...]:
        """The located sites, ascending layer (what ``editkit_locate`` returned, sorted)."""
        ...

    @property
    def initial_weights(self) -> Mapping[str, torch.Tensor]:
        """``W0`` per site module, as stored (``site.to_math(...)`` gives ``[d_out, d_in]``); do not modify."""
        ...

    @property
    def state(self) -> dict[str, Any]:
        """Per-run plugin state that a resumed run gets back (JSON-serialisable values, e.g. prefix templates)."""
        ...

    @property
    def generator(self) -> torch.Generator:
        """The run's seeded CPU random generator: draw all randomness from it (its state is journaled)."""
        ...

    @property
    def progress(self) -> Progress:
        """Progress display: ``task = run.progress.task(description, total)``, ``task.advance(1)``,
        ``run.progress.finish(task)``."""
        ...

    @property
    def editor_spec(self) -> EditorSpec:
        """The spec of the run's editor (e.g. ``has_solver``)."""
        ...

    @property
    def editor_hparams(self) -> Any:
        """The run's editor's hyperparameters (its attrs class, as resolved)."""
        ...

    @property
    def constraint_hparams(self) -> Mapping[str, Any]:
        """The run's constraints' hyperparameters by constraint name."""
        ...

    def weight(self, site: Site) -> torch.Tensor:
        """The site's current weight in math layout ``[d_out, d_in]`` (a view: do not modify it)."""
        ...

    def note(self, site: Site, key: str, value: Any) -> None:
        """Record a per-layer figure for the current batch (it lands in ``result.json``)."""
        ...

    def constraints_after(self, name: str) -> list[str]:
        """Names of the run's constraints that apply after ``name``, in order (empty if ``name`` is not run)."""
        ...

    def require_key_statistics(self) -> KeyStatisticsView:
        """The background key statistics (C0); a clear :class:`UsageError` when the run has none."""
        ...

    @property
    def edits_done(self) -> int:
        """How many requests the run has edited before the current batch (replayed batches included)."""
        ...

    def targets_for(self, requests: Sequence[EditRequest]) -> TargetProposal:
        """The editor's target values for ``requests`` on the model as it is now, nothing edited (e.g. NAS's
        reference norm of v* over sampled rewrites on the unedited model); a :class:`UsageError` when the editor
        computes none (it does not implement ``editkit_compute_targets``)."""
        ...

    def store_dir(self) -> Path | None:
        """The store the run's key statistics are kept in (``--stats-dir``, else ``$EDITKIT_STATS_DIR``, else
        ``$EDITKIT_CACHE/stats``), where a plugin keeps per-model figures it measured, in a folder of its own
        name; None when the run keeps its statistics in memory (then measure again)."""
        ...

    def model_identity(self) -> dict[str, Any]:
        """What the *unedited* model is, as the key statistics name it (its name, the sha256 of every parameter
        and buffer with the edited modules' ``W0``, of its config and tokenizer), for caches of per-model figures
        that must not follow a different model."""
        ...


_LAZY = {
    "EditBatch": "editkit.requests",
    "AccumulatedProposal": "editkit.updates",
    "DeltaProposal": "editkit.updates",
    "Proposal": "editkit.updates",
    "SolveProblem": "editkit.updates",
    "Subspace": "editkit.updates",
    "TargetProposal": "editkit.updates",
    "UndoRecord": "editkit.updates",
    "PaddedBatch": "editkit.helpers.tokens",
    "TokenizedText": "editkit.helpers.tokens",
    "first_token_from": "editkit.helpers.tokens",
    "last_token_before": "editkit.helpers.tokens",
    "pad_batch": "editkit.helpers.tokens",
    "tokenize": "editkit.helpers.tokens",
    "clip_left": "editkit.helpers.contextwindow",
    "fitting": "editkit.helpers.contextwindow",
    "max_positions": "editkit.helpers.contextwindow",
    "added_update": "editkit.helpers.tracing",
    "capture_inputs": "editkit.helpers.tracing",
    "capture_outputs": "editkit.helpers.tracing",
    "edit_output": "editkit.helpers.tracing",
    "run_until_stopped": "editkit.helpers.tracing",
    "StopForward": "editkit.helpers.tracing",
    "fused_activations": "editkit.helpers.activations",
    "continuation_scores": "editkit.helpers.scoring",
    "sample_continuations": "editkit.helpers.generation",
    "spectrum_profile": "editkit.keystats.spectrum",
}

__all__ = [
    "CACHE_ENV",
    "AccumulatedProposal",
    "ArchitectureSpec",
    "CommandSpec",
    "ConstraintSpec",
    "DatasetSpec",
    "DeltaProposal",
    "EditBatch",
    "EditRequest",
    "EditkitError",
    "EditorSpec",
    "EvalContext",
    "InputError",
    "KeyStatisticsView",
    "MetricSpec",
    "ModelLayout",
    "ModelSpec",
    "NumericalError",
    "PaddedBatch",
    "Progress",
    "Proposal",
    "RunContext",
    "Site",
    "SolveProblem",
    "StopForward",
    "Subspace",
    "TargetProposal",
    "Task",
    "TokenizedText",
    "UndoRecord",
    "UsageError",
    "added_update",
    "cache_argument",
    "cache_of",
    "cache_root",
    "capture_inputs",
    "capture_outputs",
    "clip_left",
    "continuation_scores",
    "edit_output",
    "file_sha256",
    "first_token_from",
    "fitting",
    "fused_activations",
    "greedy_completions",
    "hookimpl",
    "last_token_before",
    "lazy_attributes",
    "max_positions",
    "metric_options",
    "pad_batch",
    "release_free_memory",
    "request_from_record",
    "run_until_stopped",
    "sample_continuations",
    "spectrum_profile",
    "starts_with",
    "tokenize",
    "write_atomic",
    "write_directory_atomic",
    "write_json_atomic",
]

__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
