"""Edits as artifacts: apply journaled batches to a base model, revert them, export the result.

Every operation checks the model's identity first: the hash of the edited modules' weights must
equal the journal's base (for apply) or the weights after the last batch (for revert), unless
``force`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from editkit.errors import InputError, UsageError
from editkit.journal import Journal, JournalEntry, tensor_sha256


def _weights(model: torch.nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    try:
        return {m: model.get_submodule(m).weight.detach() for m in modules}
    except AttributeError as exc:
        raise InputError(f"the model has no module the journal edits: {exc}") from None


def _edited_modules(entries: list[JournalEntry]) -> list[str]:
    return sorted({name for e in entries for name in e.deltas()})


def _write(model: torch.nn.Module, deltas: dict[str, torch.Tensor], sign: float) -> None:
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = model.get_submodule(name).weight
            weight.copy_((weight.double() + sign * delta.to(weight.device)).to(weight.dtype))


def apply_edits(model: torch.nn.Module, run_dir: str | Path, *, upto: int | None = None, force: bool = False) -> int:
    """Apply the first ``upto`` batches (all by default) to a base model; returns how many."""
    journal = Journal(run_dir)
    manifest = journal.manifest()
    entries = journal.entries()
    if not entries:
        raise InputError(f"{run_dir}: the journal holds no complete batch")
    n = len(entries) if upto is None else upto
    if not 0 <= n <= len(entries):
        raise UsageError(f"--upto {upto}: the journal holds {len(entries)} batches")
    modules = _edited_modules(entries)
    if not force and tensor_sha256(_weights(model, modules)) != manifest["base_weights_sha256"]:
        raise InputError(
            f"{run_dir}: the model's weights differ from the journal's base model ({manifest['model']}); "
            "refusing to apply (--force to apply anyway)"
        )
    for entry in entries[:n]:
        _write(model, entry.deltas(), +1.0)
    return n


def revert_edits(model: torch.nn.Module, run_dir: str | Path, *, last: int = 1, force: bool = False) -> int:
    """Undo the last ``last`` batches of a model that holds every journaled batch; bit-exact."""
    journal = Journal(run_dir)
    entries = journal.entries()
    if not 1 <= last <= len(entries):
        raise UsageError(f"--last {last}: the journal holds {len(entries)} batches")
    expected = json.loads((entries[-1].directory / "entry.json").read_text()).get("weights_sha256_after")
    modules = _edited_modules(entries)
    if not force and tensor_sha256(_weights(model, modules)) != expected:
        raise InputError(
            f"{run_dir}: the model's weights are not those after the journal's last batch; refusing to revert "
            "(--force to revert anyway)"
        )
    for entry in reversed(entries[len(entries) - last :]):
        _write(model, entry.deltas(), -1.0)
    return last


def export_model(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """``save_pretrained`` (safetensors) of model and tokenizer into ``out`` (must not exist)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; choose a new --out")
    tmp = out.with_name(f".{out.name}.partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
