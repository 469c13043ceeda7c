"""editkit: locate-then-edit knowledge editing with a small pluggy kernel.

The public API for running edits from Python. Importing ``editkit`` does not import torch: names that
need it (:class:`EditRun`, :class:`SolveProblem`, ...) are loaded on first access. Plugins (editors,
constraints, datasets, metrics, ...) import from :mod:`editkit.api`, the declared plugin API.
"""

from __future__ import annotations

from editkit.catalog import (
    ArchitectureSpec,
    Catalog,
    CommandSpec,
    ConstraintSpec,
    DatasetSpec,
    EditorSpec,
    MetricSpec,
    ModelSpec,
)
from editkit.errors import EditkitError, InputError, NumericalError, UsageError
from editkit.lazy import lazy_attributes
from editkit.markers import hookimpl, hookspec
from editkit.requests import EditRequest, load_requests, requests_from_records
from editkit.sites import Site

__version__ = "0.1.0"

_LAZY = {
    "EditRun": "editkit.run",
    "EditBatch": "editkit.requests",
    "RunConfig": "editkit.config",
    "SolveProblem": "editkit.updates",
    "DeltaProposal": "editkit.updates",
    "AccumulatedProposal": "editkit.updates",
    "Subspace": "editkit.updates",
    "UndoRecord": "editkit.updates",
    "ModelLayout": "editkit.layout",
    "resolve_layout": "editkit.layout",
    "PluginHost": "editkit.plugins",
    "RunJob": "editkit.job.runjob",
    "run_job": "editkit.job.launch",
}

__all__ = [
    "AccumulatedProposal",
    "ArchitectureSpec",
    "Catalog",
    "CommandSpec",
    "ConstraintSpec",
    "DatasetSpec",
    "DeltaProposal",
    "EditBatch",
    "EditRequest",
    "EditRun",
    "EditkitError",
    "EditorSpec",
    "InputError",
    "MetricSpec",
    "ModelLayout",
    "ModelSpec",
    "NumericalError",
    "PluginHost",
    "RunConfig",
    "RunJob",
    "Site",
    "SolveProblem",
    "Subspace",
    "UndoRecord",
    "UsageError",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_requests",
    "requests_from_records",
    "resolve_layout",
    "run_job",
]


__getattr__ = lazy_attributes(__name__, _LAZY)
