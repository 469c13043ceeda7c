"""Edits as artifacts: apply journaled batches to a base model, revert them, export the result.

Every operation checks, before it changes a weight: that the model has every module the journal edits, in
the journal's shapes (also with ``force``); the model's identity (the hash of the edited modules' weights must
equal the journal's base for apply, the weights after the last batch for revert), unless ``force`` is given;
and that every delta it uses is finite. Then, batch by batch, that the weights are those the journal recorded
after that batch (apply) or before it (revert), where it recorded them, unless ``force`` is given, and that
they are still finite. A failed check raises :class:`~editkit.errors.InputError` (exit 2) naming the batch and
module, with the model's edited weights as they were before the call: nothing half-applied is ever exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import attrs
import torch

from editkit.errors import InputError, UsageError
from editkit.helpers.atomic import write_directory_atomic
from editkit.job.journal import (
    AFTER_HASH,
    BASE_HASH,
    Journal,
    JournalEntry,
    JournalError,
    recorded_hash,
    tensor_sha256,
)
from editkit.job.outputs import check_new_directory
from editkit.report.data import owned_by_run
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


def _shape(shape: Any) -> str:
    return " × ".join(str(int(n)) for n in shape) or "scalar"


def _journal_shapes(entries: list[JournalEntry]) -> dict[str, tuple[tuple[int, ...], JournalEntry]]:
    """Each edited module's weight shape as the journal's deltas give it (their headers only: nothing is loaded),
    with the first batch that gives it; batches that disagree are a damaged journal."""
    from safetensors import safe_open

    shapes: dict[str, tuple[tuple[int, ...], JournalEntry]] = {}
    for entry in entries:
        with safe_open(str(entry.directory / "delta.safetensors"), framework="pt") as fh:
            names = fh.keys()
            for name in names:
                shape = tuple(int(n) for n in fh.get_slice(name).get_shape())
                first = shapes.setdefault(name, (shape, entry))
                if first[0] != shape:
                    raise JournalError(f"{entry.directory}: batch {entry.index}'s delta for {name} is {_shape(shape)},"
                                       f" batch {first[1].index}'s {_shape(first[0])}; the journal is damaged")
    return shapes


def check_shapes(model: torch.nn.Module, selection: BatchSelection, entries: list[JournalEntry]) -> list[str]:
    """The modules the ``entries`` edit; refuses (:class:`InputError`, one line) a model without one of them, or
    whose weight has another shape than the journal's: ``--force`` skips the identity check, not this one
    (adding a delta of another shape is impossible, and a half-edited model is never written)."""
    mismatched: list[str] = []
    shapes = _journal_shapes(entries)
    for name, (shape, entry) in shapes.items():
        try:
            weight = cast(torch.Tensor, model.get_submodule(name).weight)
        except AttributeError:
            raise InputError(f"{selection.run_dir}: the model has no module {name}, which batch {entry.index} of the "
                             "journal edits; refusing (was the journal written for another model?)") from None
        if tuple(weight.shape) != shape:
            mismatched.append(f"{name} is {_shape(weight.shape)} in the model but {_shape(shape)} in the journal")
    if mismatched:
        more = f" (and {len(mismatched) - 1} more module(s))" if len(mismatched) > 1 else ""
        raise InputError(f"{selection.run_dir}: the model's shapes differ from the journal's: {mismatched[0]}{more}; "
                         f"the journal was written for another model ({selection.manifest.get('model')}); refusing, "
                         "nothing was written")
    return sorted(shapes)


def check_finite(entries: list[JournalEntry]) -> None:
    """Refuse (:class:`InputError`) a batch whose delta holds NaN or infinity, naming the batch and module:
    checked for every batch before any weight is written (one batch in memory at a time)."""
    for entry in entries:
        for name, delta in entry.deltas().items():
            if not bool(torch.isfinite(delta).all()):
                bad = int((~torch.isfinite(delta)).sum())
                raise InputError(f"{entry.directory}: batch {entry.index}'s delta for {name} holds {bad} non-finite "
                                 "value(s) (NaN or infinity): the journal is damaged; refusing, nothing was written")


def check_output(out: str | Path, run_dir: str | Path, model: str | Path) -> None:
    """Refuse (:class:`UsageError`, one line) an ``--out`` that is the input model (the directory or file
    ``--model`` names) or is, or lies in, what the run directory owns (its journal, ``result.json``,
    ``deltas.safetensors``): apply, export and revert never write over what they read."""
    target = Path(out).resolve()
    source = Path(str(model)).expanduser()
    if source.exists() and target == source.resolve():
        raise UsageError(f"--out {out}: that is the input model (--model {model}); it is never written over, "
                         "give a new directory")
    owner = owned_by_run(out, [run_dir])
    if owner is not None:
        raise UsageError(f"--out {out}: that is {owner}; the run is never written over, give a new directory")


class _Batches:
    """Writes batches to a model, checking each against the journal; :meth:`restore` puts the weights of
    ``written`` (the modules the batches edit) back as they were when it was made (a copy, on the CPU)."""

    def __init__(self, model: torch.nn.Module, selection: BatchSelection, written: list[str], *, force: bool) -> None:
        self.model, self.force = model, force
        self.modules = selection.modules()  # what the journal's hashes cover
        self.saved = {m: w.to("cpu", copy=True) for m, w in _weights(model, written).items()}
        self.finite = {m: bool(torch.isfinite(w).all()) for m, w in self.saved.items()}

    def write(self, entry: JournalEntry, sign: float, expected: str | None, state: str, recorded_as: str) -> None:
        """Add (``sign`` +1) or subtract (-1) ``entry``'s deltas; then the edited weights must hash to
        ``expected`` (the journal's ``recorded_as``; unless ``force``, or ``None``: not recorded) and be finite
        where they were."""
        deltas = entry.deltas()
        try:
            _write(self.model, deltas, sign)
        except BaseException:
            self.restore()
            raise
        for name, weight in _weights(self.model, sorted(deltas)).items():
            if self.finite[name] and not bool(torch.isfinite(weight).all()):
                self.restore()
                raise InputError(f"{entry.directory}: {name} holds non-finite weights {state} (its delta overflows "
                                 "the model's dtype?); refusing, nothing was written")
        if not self.force and expected is not None and tensor_sha256(_weights(self.model, self.modules)) != expected:
            self.restore()
            raise InputError(f"{entry.directory}: the model's edited weights {state} are not those the journal "
                             f"recorded ({recorded_as}): a delta was modified, or the model is not the journal's; "
                             "refusing, nothing was written")

    def restore(self) -> None:
        with torch.no_grad():
            for name, weight in _weights(self.model, sorted(self.saved)).items():
                weight.copy_(self.saved[name])


def _after(entry: JournalEntry) -> str | None:
    """The hash of the edited weights the journal recorded after ``entry``'s batch (None in journals without)."""
    return recorded_hash(json.loads((entry.directory / "entry.json").read_text()), AFTER_HASH)


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
    """Apply the first ``selection.count`` batches to a base model; returns how many. Checked as the module
    docstring says: on any failure the model's edited weights are left as they were."""
    manifest = selection.manifest
    entries = selection.entries[: selection.count]
    written = check_shapes(model, selection, entries)
    if not force and tensor_sha256(_weights(model, selection.modules())) != recorded_hash(manifest, BASE_HASH):
        raise InputError(
            f"{selection.run_dir}: the model's weights differ from the journal's base model ({manifest['model']}); "
            "refusing to apply (--force to apply anyway)"
        )
    check_finite(entries)
    batches = _Batches(model, selection, written, force=force)
    for entry in entries:
        batches.write(entry, +1.0, _after(entry), f"after batch {entry.index}", f"batch {entry.index}'s {AFTER_HASH}")
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
    """Undo the last ``selection.count`` batches; bit-exact. Checked as the module docstring says: after undoing
    a batch the weights must be those the journal recorded after the batch before it (the base after the
    first); on any failure the model's edited weights are left as they were."""
    entries = selection.entries
    undone = entries[len(entries) - selection.count :]
    written = check_shapes(model, selection, undone)
    if not force and tensor_sha256(_weights(model, selection.modules())) != _after(entries[-1]):
        raise InputError(
            f"{selection.run_dir}: the model's weights are not those after the journal's last batch; refusing "
            "to revert (--force to revert anyway)"
        )
    check_finite(undone)
    batches = _Batches(model, selection, written, force=force)
    for entry in reversed(undone):
        if entry.index > 0:
            before, recorded_as = _after(entries[entry.index - 1]), f"batch {entry.index - 1}'s {AFTER_HASH}"
        else:
            before, recorded_as = recorded_hash(selection.manifest, BASE_HASH), f"the manifest's {BASE_HASH}"
        batches.write(entry, -1.0, before, f"after undoing batch {entry.index}", recorded_as)
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
