"""The edit journal: every batch's edit as a durable, checksummed artifact in the run directory.

Layout (``RUN/journal/``)::

    manifest.json              identity of the run: config, model, the edited modules and the hash of
                               their base weights, requests, how many batches the run has, seed,
                               prefix templates, pre-edit metrics; written with the first batch, so
                               a run that fails before its first batch is complete leaves no journal
    batch-00000/
        requests.json          the batch's requests (CounterFact records)
        delta.safetensors      what the batch added to each edited weight, storage layout, float64
        state.safetensors      sequential state after the batch: the batch's keys per site
                               (Cp = Σ K Kᵀ), the run's RNG state
        entry.json             sha256 of the three files; written last, atomically: a batch
                               directory without a valid entry.json is not part of the journal

Hashes of weights: ``edited_modules_sha256`` (manifest) and ``edited_modules_sha256_after``
(entry) are :func:`tensor_sha256` of the edited modules' weight tensors only (before the first
batch, after each batch): what ``apply`` and ``revert`` check a model against. They are not the
sha256 of the model's files (``result.json`` ``manifest.model.weight_files_sha256``) nor of all its
parameters (the key statistics' ``model.weights_sha256``).

Deltas are stored in float64: the difference of two float32 (or bf16) weights is exact in
float64, so applying and reverting batches restores weights bit-exactly. Only JSON and
safetensors are ever read (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from editkit.errors import InputError, UsageError
from editkit.helpers.atomic import write_json_atomic, write_safetensors_atomic
from editkit.job.manifest import file_sha256

FORMAT = 1
BASE_HASH = "edited_modules_sha256"  # journals written before it was named so: "base_weights_sha256"
AFTER_HASH = "edited_modules_sha256_after"  # before: "weights_sha256_after"
_OLD_NAMES = {BASE_HASH: "base_weights_sha256", AFTER_HASH: "weights_sha256_after"}


def recorded_hash(record: Mapping[str, Any], key: str) -> str | None:
    """``record[key]`` (:data:`BASE_HASH` of a manifest, :data:`AFTER_HASH` of an entry), also from
    journals that stored it under its former name."""
    value = record.get(key)
    return value if value is not None else record.get(_OLD_NAMES[key])


class JournalError(InputError):
    """A journal file is missing, truncated or tampered with."""


def tensor_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@attrs.frozen(kw_only=True)
class JournalEntry:
    """One complete, verified batch of the journal."""

    index: int
    directory: Path
    requests: list[dict[str, Any]] = attrs.field(eq=False, repr=False)

    def deltas(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.directory / "delta.safetensors"))

    def state(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.directory / "state.safetensors"))


class Journal:
    """Reader and writer of ``RUN/journal``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / "journal"

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def has_complete_batch(self) -> bool:
        """Whether any batch got its ``entry.json`` (cheap: nothing is verified)."""
        return any((d / "entry.json").is_file() for d in self.root.glob("batch-*"))

    def claim_for_new_run(self, out_dir: str | Path) -> None:
        """Make ``RUN/journal`` ready for a new run: refuse one holding a complete batch (it is
        continued with ``--resume``); remove one without (a run that failed or was killed before
        its first batch was complete left it, and there is nothing in it to continue)."""
        self.check_new_run(out_dir)
        if self.root.exists():
            shutil.rmtree(self.root)

    def check_new_run(self, out_dir: str | Path) -> None:
        """Raise :class:`~editkit.errors.UsageError` if a new run in ``out_dir`` would replace
        journaled batches (no side effect; :meth:`claim_for_new_run` also clears what is replaceable)."""
        if self.has_complete_batch():
            raise UsageError(f"{out_dir} already holds a run journal: continue it with --resume {out_dir}, "
                             "or choose another --out")

    def check_resumable(self, out_dir: str | Path) -> dict[str, Any]:
        """The manifest of a journal that ``--resume`` can continue (it has a complete batch)."""
        manifest = self.manifest()
        if not self.has_complete_batch():
            raise UsageError(f"--resume {out_dir}: nothing to resume, the run stopped before its first batch "
                             f"was complete; start it again with `editkit run ... --out {out_dir}` (that "
                             "replaces this journal)")
        return manifest

    def planned_batches(self, manifest: Mapping[str, Any] | None = None) -> int | None:
        """How many batches the run has (``None`` for a manifest that records neither the count nor
        its requests and batch size)."""
        manifest = self.manifest() if manifest is None else manifest
        if isinstance(manifest.get("batches"), int):
            return manifest["batches"]
        try:  # journals written before the count was recorded
            return math.ceil(len(manifest["requests"]) / int(manifest["config"]["batch_size"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        write_json_atomic(self.manifest_path, {"format": FORMAT, **manifest})

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise JournalError(
                f"{self.manifest_path}: no journal here (was the run started with this --out?)"
            ) from None
        except NotADirectoryError:
            raise JournalError(f"{self.root.parent}: not a run directory (give the directory that `editkit run "
                               "--out` wrote)") from None
        except OSError as exc:
            raise JournalError(f"{self.manifest_path}: cannot read the journal manifest ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise JournalError(f"{self.manifest_path}: corrupt journal manifest ({exc})") from None
        if data.get("format") != FORMAT:
            raise JournalError(f"{self.manifest_path}: unknown journal format {data.get('format')!r}")
        return data

    # ---------------------------------------------------------------- batches
    def batch_dir(self, index: int) -> Path:
        return self.root / f"batch-{index:05d}"

    def append(
        self,
        index: int,
        requests: list[dict[str, Any]],
        deltas: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor],
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write batch ``index``; ``entry.json`` last, so a crash leaves no accepted partial batch."""
        directory = self.batch_dir(index)
        if (directory / "entry.json").exists():
            raise JournalError(f"{directory}: batch {index} is already in the journal (applied twice?)")
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / "requests.json", requests)
        write_safetensors_atomic(directory / "delta.safetensors", {k: v.contiguous() for k, v in deltas.items()})
        write_safetensors_atomic(directory / "state.safetensors", {k: v.contiguous() for k, v in state.items()})
        files = {name: file_sha256(directory / name) for name in ("requests.json", "delta.safetensors",
                                                                  "state.safetensors")}
        write_json_atomic(directory / "entry.json", {"index": index, "sha256": files, **(extra or {})})
        return directory

    def _verified(self, directory: Path) -> JournalEntry | None:
        entry_path = directory / "entry.json"
        if not entry_path.exists():
            return None
        try:
            entry = json.loads(entry_path.read_text())
        except json.JSONDecodeError as exc:
            raise JournalError(f"{entry_path}: corrupt journal entry ({exc})") from None
        for name, expected in entry["sha256"].items():
            path = directory / name
            if not path.exists():
                raise JournalError(f"{path}: missing journal file")
            if file_sha256(path) != expected:
                raise JournalError(f"{path}: checksum mismatch (truncated or modified); refusing to use it")
        requests = json.loads((directory / "requests.json").read_text())
        return JournalEntry(index=int(entry["index"]), directory=directory, requests=requests)

    def entries(self) -> list[JournalEntry]:
        """Complete batches in order, each verified; they must be numbered 0..n-1 without gaps."""
        out: list[JournalEntry] = []
        for directory in sorted(self.root.glob("batch-*")):
            entry = self._verified(directory)
            if entry is None:
                continue
            if entry.index != len(out):
                raise JournalError(f"{directory}: batch {entry.index} follows batch {len(out) - 1}; journal has a gap")
            out.append(entry)
        return out

    def discard_incomplete(self) -> list[Path]:
        """Remove batch directories after the last complete one that never got their ``entry.json``
        (a crash mid-batch). One without ``entry.json`` before a complete batch is left in place:
        that is a damaged journal, which :meth:`entries` reports, not a batch to redo."""
        directories = sorted(self.root.glob("batch-*"))
        complete = [i for i, d in enumerate(directories) if (d / "entry.json").exists()]
        removed = []
        for directory in directories[complete[-1] + 1 if complete else 0 :]:
            shutil.rmtree(directory)
            removed.append(directory)
        return removed

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries())
