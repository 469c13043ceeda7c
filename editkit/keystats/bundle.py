"""Statistics people can share: stored C0 files (and their eigenbases) moved as one portable file.

A bundle is one safetensors file. Entry ``i`` holds ``entry{i}/total`` (Σ k kᵀ ``[d_in, d_in]``, as
stored) and, when the store had it, ``entry{i}/eigenvalues`` ``[d_in]`` and ``entry{i}/eigenvectors``
``[d_in, d_in]`` (float64). The metadata ``editkit.entries`` lists each entry's identity (model weights,
config and tokenizer hashes, module, layer, corpus, truncation, budget, dtype, format), token count and
collection info; ``editkit.sha256`` covers every tensor byte *and* that list, so no field that decides
the numbers can change unnoticed.

Import checks the bundle, then each entry against the local model's identity: the model's name and path
are labels (:mod:`editkit.keystats.reuse`), its weights, config, tokenizer and dtype are the key; any
difference stops the import (exit 2) before anything is written. Imported files are written into the
store under the local model's name, with ``imported_from`` in their info, so ``editkit run`` reuses them
and says where they came from.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editkit.errors import InputError
from editkit.helpers.atomic import write_atomic
from editkit.keystats.identity import canonical_json, tensor_bytes
from editkit.keystats.reuse import Candidate, judge
from editkit.keystats.statistics import cached_eigendecomposition
from editkit.keystats.store import CorruptStatisticsError, StatsStore, StoredStatistics

KIND_BUNDLE = "statistics-bundle"
BUNDLE_FORMAT = "editkit.stats-bundle/1"
_MODEL_KEYS = ("weights_sha256", "config_sha256", "tokenizer_sha256", "param_dtype")


@attrs.frozen(kw_only=True)
class BundleEntry:
    """One layer's statistics inside a bundle."""

    identity: dict[str, Any] = attrs.field(eq=False)
    count: int
    info: dict[str, Any] = attrs.field(eq=False)
    total: torch.Tensor = attrs.field(eq=False, repr=False)  # [d_in, d_in]
    eigh: tuple[torch.Tensor, torch.Tensor] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def layer(self) -> Any:
        return self.identity.get("layer")


def _digest(tensors: Mapping[str, torch.Tensor], entries_json: str) -> str:
    h = hashlib.sha256(BUNDLE_FORMAT.encode() + b"\0" + entries_json.encode() + b"\0")
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


def select(store: StatsStore, model: Mapping[str, Any], layers: Sequence[int]) -> list[StoredStatistics]:
    """Every complete statistics file in ``store`` of this model (its weights, config, tokenizer, dtype) at
    ``layers``, read and verified; layer order, then token count."""
    chosen = []
    for candidate in store.candidates():
        stored_model = candidate.identity.get("model") or {}
        if candidate.identity.get("layer") in layers and all(stored_model.get(k) == model.get(k)
                                                                for k in _MODEL_KEYS):
            stats = store.read(candidate.path)
            assert stats is not None  # no identity asked: never a mismatch
            chosen.append(stats)
    return sorted(chosen, key=lambda s: (s.identity.get("layer"), s.count, str(s.path)))


def export(store: StatsStore, stats: Sequence[StoredStatistics], out: Path, *, with_eigh: bool = True) -> int:
    """Write ``stats`` (with their eigendecompositions, computed and cached when missing) to ``out``
    atomically; returns the bundle's size in bytes."""
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for i, s in enumerate(stats):
        tensors[f"entry{i}/total"] = s.total.contiguous()
        if with_eigh:
            values, vectors = cached_eigendecomposition(s, store)
            tensors[f"entry{i}/eigenvalues"] = values.contiguous()
            tensors[f"entry{i}/eigenvectors"] = vectors.contiguous()
        entries.append({"identity": s.identity, "token_count": s.count, "info": s.info, "sha256": s.sha256})
    entries_json = canonical_json(entries)
    metadata = {"format": "pt", "editkit.kind": KIND_BUNDLE, "editkit.format": BUNDLE_FORMAT,
                "editkit.entries": entries_json, "editkit.exported": str(time.time()),
                "editkit.sha256": _digest(tensors, entries_json)}
    write_atomic(out, lambda tmp: save_file(tensors, str(tmp), metadata))
    return out.stat().st_size


def read(path: Path) -> list[BundleEntry]:
    """The verified entries of a bundle; any damage or tampering raises :class:`InputError` naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: no such statistics bundle")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            if metadata.get("editkit.kind") != KIND_BUNDLE:
                raise InputError(f"{path} is not an editkit statistics bundle (made by `editkit stats export`)")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path} is not a readable statistics bundle ({type(exc).__name__}: {exc})") from None
    if metadata.get("editkit.format") != BUNDLE_FORMAT:
        raise InputError(f"{path}: bundle format {metadata.get('editkit.format')!r}, this editkit reads "
                         f"{BUNDLE_FORMAT!r}")
    entries_json = metadata.get("editkit.entries", "")
    if _digest(tensors, entries_json) != metadata.get("editkit.sha256"):
        raise InputError(f"{path} failed its checksum (its tensors or its identities, token counts or info changed "
                         "since it was exported); export it again")
    out = []
    for i, entry in enumerate(json.loads(entries_json)):
        total = tensors[f"entry{i}/total"]
        eigh = None
        if f"entry{i}/eigenvalues" in tensors:
            eigh = (tensors[f"entry{i}/eigenvalues"], tensors[f"entry{i}/eigenvectors"])
        out.append(BundleEntry(identity=entry["identity"], count=int(entry["token_count"]), info=entry["info"],
                               total=total, eigh=eigh))
    return out


def check_model(path: Path, entries: Sequence[BundleEntry], model: Mapping[str, Any], model_label: str) -> None:
    """Stop (exit 2) unless every entry was exported for a model with these weights, config, tokenizer and
    dtype, naming the first difference."""
    for entry in entries:
        wanted = dict(entry.identity, model=dict(model))
        differences = judge(Candidate(path=path, identity=entry.identity, count=entry.count), wanted).differences
        model_differences = [d for d in differences if d.startswith(("model", "tokenizer"))]
        if model_differences:
            exported = (entry.identity.get("model") or {}).get("name")
            raise InputError(f"{path}: layer {entry.layer}'s statistics were exported for another model "
                             f"({exported}); {model_label} differs in {', '.join(model_differences)}. Nothing "
                             "was imported")


def import_entries(store: StatsStore, entries: Sequence[BundleEntry], model: Mapping[str, Any], source: Path,
                   *, say: Callable[[str], None] | None = None) -> list[StoredStatistics]:
    """Write every entry into ``store`` under the local model's identity (call :func:`check_model` first)."""
    written = []
    for entry in entries:
        identity = dict(entry.identity, model=dict(model))
        info = {k: v for k, v in entry.info.items() if k not in ("editkit_version", "created")}
        info["imported_from"] = {"file": str(source), "model_name": (entry.identity.get("model") or {}).get("name"),
                                 "exported_by": entry.info.get("editkit_version"), "imported": time.time()}
        stats = store.save(identity, entry.total, entry.count, info)
        if entry.eigh is not None:
            store.save_eigh(stats, *entry.eigh)
        if say is not None:
            say(f"imported layer {entry.layer} ({entry.count:,} tokens, {entry.identity.get('module')}) -> "
                f"{stats.path}" + ("" if entry.eigh is not None else " (its eigendecomposition will be computed "
                                   "on first use)"))
        written.append(stats)
    return written


__all__ = ["BundleEntry", "CorruptStatisticsError", "check_model", "export", "import_entries", "read", "select"]
