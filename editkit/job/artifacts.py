"""Edits as artifacts: apply journaled batches to a base model, revert them, export the result.

Every operation checks the model's identity first: the hash of the edited modules' weights must
equal the journal's base (for apply) or the weights after the last batch (for revert), unless
``force`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import attrs
import torch

from editkit.errors import InputError, UsageError
from editkit.helpers.atomic import write_directory_atomic
from editkit.job.journal import AFTER_HASH, BASE_HASH, Journal, JournalEntry, recorded_hash, tensor_sha256
from editkit.job.outputs import check_new_directory
from editkit.updates import add_exactly


@attrs.frozen(kw_only=True)
class BatchSelection:
    """What apply/export/revert will use, checked before any model is loaded: the run directory, its
    journal manifest, every complete (verified) batch, how many of them the command uses (the first
    ``count`` for apply/export, the last ``count`` for revert), and how many batches the run has
    (``planned``; ``None`` if the journal does not say)."""

    run_dir: Path = attrs.field(converter=Path)
    manifest: dict[str, Any] = attrs.field(repr=False)
    entries: list[JournalEntry] = attrs.field(repr=False)
    count: int = attrs.field(validator=attrs.validators.ge(0))
    planned: int | None = None

    def modules(self) -> list[str]:
        """The edited modules (recorded in the manifest; read from the deltas' headers in older journals)."""
        recorded = self.manifest.get("edited_modules")
        if recorded:
            return sorted(recorded)
        from safetensors import safe_open

        names: set[str] = set()
        for entry in self.entries:
            with safe_open(str(entry.directory / "delta.safetensors"), framework="pt") as fh:
                names.update(fh.keys())
        return sorted(names)


def _weights(model: torch.nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    try:
        return {m: cast(torch.Tensor, model.get_submodule(m).weight).detach() for m in modules}
    except AttributeError as exc:
        raise InputError(f"the model has no module the journal edits: {exc}") from None


def _write(model: torch.nn.Module, deltas: dict[str, torch.Tensor], sign: float) -> None:
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = cast(torch.Tensor, model.get_submodule(name).weight)
            add_exactly(weight, sign * delta)


def select_batches(run_dir: str | Path, *, upto: int | None = None, allow_partial: bool = False) -> BatchSelection:
    """The batches apply/export write: the first ``upto``, or every batch of a complete run.

    Without ``upto`` an incomplete run (fewer complete batches than the run has: it was interrupted,
    or a batch's ``entry.json`` is missing) is refused unless ``allow_partial``: a partly edited
    model is never written silently.
    """
    if upto is not None and upto < 0:
        raise UsageError(f"--upto {upto}: expected how many batches to apply, a number >= 0")
    journal = Journal(run_dir)
    manifest = journal.manifest()
    entries = journal.entries()
    if not entries:
        raise InputError(f"{run_dir}: the journal holds no complete batch")
    planned = journal.planned_batches(manifest)
    incomplete = planned is not None and len(entries) < planned
    if upto is None:
        if incomplete and not allow_partial:
            raise UsageError(
                f"{run_dir}: the run is incomplete, {len(entries)} of its {planned} batches are in the journal "
                f"(it was interrupted, or a batch's entry.json is missing); finish it with `editkit run --resume "
                f"{run_dir}`, or pass --upto K (K <= {len(entries)}) or --allow-partial to use only those"
            )
        upto = len(entries)
    elif upto > len(entries):
        of_run = f" of the run's {planned}" if incomplete else ""
        raise UsageError(f"--upto {upto}: the journal holds {len(entries)} complete batch(es){of_run}")
    return BatchSelection(run_dir=run_dir, manifest=manifest, entries=entries, count=upto, planned=planned)


def apply_selected(model: torch.nn.Module, selection: BatchSelection, *, force: bool = False) -> int:
    """Apply the first ``selection.count`` batches to a base model; returns how many."""
    manifest = selection.manifest
    if not force and tensor_sha256(_weights(model, selection.modules())) != recorded_hash(manifest, BASE_HASH):
        raise InputError(
            f"{selection.run_dir}: the model's weights differ from the journal's base model ({manifest['model']}); "
            "refusing to apply (--force to apply anyway)"
        )
    for entry in selection.entries[: selection.count]:
        _write(model, entry.deltas(), +1.0)
    return selection.count


def apply_edits(model: torch.nn.Module, run_dir: str | Path, *, upto: int | None = None, force: bool = False,
                allow_partial: bool = False) -> int:
    """Apply the first ``upto`` batches (all of a complete run by default) to a base model; returns how many."""
    return apply_selected(model, select_batches(run_dir, upto=upto, allow_partial=allow_partial), force=force)


def select_revert(run_dir: str | Path, *, last: int = 1) -> BatchSelection:
    """The last ``last`` batches, to undo from a model that holds every complete batch."""
    if last < 1:
        raise UsageError(f"--last {last}: expected how many batches to undo, a number >= 1")
    journal = Journal(run_dir)
    manifest = journal.manifest()
    entries = journal.entries()
    if last > len(entries):
        raise UsageError(f"--last {last}: the journal holds {len(entries)} complete batch(es)")
    return BatchSelection(run_dir=run_dir, manifest=manifest, entries=entries, count=last,
                          planned=journal.planned_batches(manifest))


def revert_selected(model: torch.nn.Module, selection: BatchSelection, *, force: bool = False) -> int:
    """Undo the last ``selection.count`` batches; bit-exact."""
    entries = selection.entries
    expected = recorded_hash(json.loads((entries[-1].directory / "entry.json").read_text()), AFTER_HASH)
    if not force and tensor_sha256(_weights(model, selection.modules())) != expected:
        raise InputError(
            f"{selection.run_dir}: the model's weights are not those after the journal's last batch; refusing "
            "to revert (--force to revert anyway)"
        )
    for entry in reversed(entries[len(entries) - selection.count :]):
        _write(model, entry.deltas(), -1.0)
    return selection.count


def revert_edits(model: torch.nn.Module, run_dir: str | Path, *, last: int = 1, force: bool = False) -> int:
    """Undo the last ``last`` batches of a model that holds every journaled batch; bit-exact."""
    return revert_selected(model, select_revert(run_dir, last=last), force=force)


def export_model(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """``save_pretrained`` (safetensors) of model and tokenizer into ``out`` (must not exist, or be an
    empty directory), atomically: ``out`` appears complete or not at all."""
    out = Path(out)
    check_new_directory(out, "--out")

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    write_directory_atomic(out, fill)
    return out
