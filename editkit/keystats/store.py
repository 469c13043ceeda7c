"""The on-disk statistics store: safetensors files with self-describing JSON metadata.

Layout under ``stats_dir``::

    <model slug>/<module>--<digest>.safetensors        Σ k kᵀ [d_in, d_in] + metadata (complete)
    <model slug>/<module>--<digest>.eigh.safetensors   eigh(C0) in float64, bound to the file above
    <model slug>/.partial/<run digest>.safetensors     checkpoint of a collection in progress

``digest`` is the sha256 of the layer's identity (:mod:`editkit.keystats.identity`); a lookup
also compares the stored identity with the requested one, so it never returns a file made
for anything else. Every file carries the sha256 of its tensor bytes, checked on load: a
corrupt or truncated file raises :class:`CorruptStatisticsError`, it is never used. Every file
also carries ``editkit.header_sha256``, the sha256 of the canonical JSON of all its other
``editkit.*`` metadata fields (kind, identity, token count, tensor checksum, info; a checkpoint's
position and token count), so no field that decides the numbers can change unnoticed: a file whose
header does not verify is refused on read and is never a reuse candidate. Files written before
that field existed are refused too (their token count cannot be trusted): they are recomputed, unless
``editkit stats adopt`` vouches for them (:meth:`StatsStore.adopt_older`). Every write goes to a temporary
file in the same folder, is fsynced, then ``os.replace``-d, so a killed process leaves either the old file,
the new file, or a stray ``.*.tmp-*`` file that no lookup reads. Checkpoints live apart (``.partial``) and
are marked ``kind=checkpoint``, so no lookup accepts one as complete. A write that fails (disk full, …) raises
:class:`~editkit.helpers.atomic.WriteError` naming the file, and leaves no temporary file behind.
Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editkit.errors import EditkitError, UsageError
from editkit.helpers.atomic import writing
from editkit.keystats.identity import FORMAT, canonical_json, digest, tensor_bytes
from editkit.keystats.reuse import Candidate

_SLUG = re.compile(r"[^A-Za-z0-9._\-]+")
KIND_STATS = "statistics"
KIND_EIGH = "eigh"
KIND_CHECKPOINT = "checkpoint"
HEADER_KEY = "editkit.header_sha256"
OLDER_FORMAT = ("was written by an older editkit: its token count, identity and kind are not covered by a checksum, so "
          "it cannot be trusted")


class CorruptStatisticsError(EditkitError):
    """A statistics, eigendecomposition or checkpoint file failed its integrity check."""


class OlderStatisticsError(CorruptStatisticsError):
    """A file written by an older editkit, whose header no checksum covers: recomputed where it would be used."""


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (model names like ``org/name`` → ``org--name``)."""
    out = _SLUG.sub("_", text.replace("/", "--").replace("\\", "--")).strip("._-")
    return out[:120] or "model"


def statistics_sha256(total: torch.Tensor) -> str:
    """The checksum a statistics file stores for its ``total`` tensor."""
    return _sha256_tensors({"total": total})


def _sha256_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + b"\0")
        h.update(tensor_bytes(tensors[name]))
    return h.hexdigest()


def _editkit_version() -> str:
    from editkit import __version__

    return __version__


@attrs.frozen(kw_only=True)
class StoredStatistics:
    """One layer's complete statistics as read from (or written to) the store."""

    total: torch.Tensor = attrs.field(eq=False, repr=False)  # Σ k kᵀ [d_in, d_in], collection dtype
    count: int
    identity: dict[str, Any] = attrs.field(eq=False)
    info: dict[str, Any] = attrs.field(eq=False)  # editkit version, documents, ranks, time, ...
    sha256: str
    path: Path | None = None


@attrs.frozen(kw_only=True)
class Checkpoint:
    """Partial sums of an interrupted collection and where in the corpus it stopped."""

    totals: dict[str, torch.Tensor] = attrs.field(eq=False, repr=False)  # module -> partial Σ k kᵀ
    position: int  # documents consumed (corpus order)
    tokens: int  # tokens accumulated
    layout: dict[str, Any] = attrs.field(eq=False)  # how the partial sums are laid out (panels)
    path: Path


def header_sha256(metadata: Mapping[str, str]) -> str:
    """The checksum of a file's header: every ``editkit.*`` metadata field but this checksum itself."""
    fields = {k: v for k, v in metadata.items() if k.startswith("editkit.") and k != HEADER_KEY}
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def _with_header(metadata: Mapping[str, str]) -> dict[str, str]:
    return {**metadata, HEADER_KEY: header_sha256(metadata)}


def _header_problem(metadata: Mapping[str, str]) -> str | None:
    """Why a header does not verify (missing or changed checksum), None when it does."""
    expected = metadata.get(HEADER_KEY)
    if expected is None:
        return OLDER_FORMAT
    if header_sha256(metadata) != expected:
        return ("failed its header checksum (its token count, identity, kind or another metadata field changed "
                "since it was written)")
    return None


def _check_header(path: Path, what: str, metadata: Mapping[str, str], action: str = "recompute") -> None:
    problem = _header_problem(metadata)
    if problem is not None:
        kind = OlderStatisticsError if problem is OLDER_FORMAT else CorruptStatisticsError
        raise kind(f"{what} {path} {problem}; delete it to {action}")


def _atomic_save(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    with writing(path, any_os_error=True):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with writing(path):
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), dict(metadata))
        with writing(path, any_os_error=True):
            os.chmod(tmp, 0o644)  # readable by others sharing the stats dir (mkstemp-style files are 0600)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # gone already, or a failing unlink must not hide why the write failed
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sweep_orphans(folder: Path, name: str | None) -> None:
    """Remove ``.NAME.tmp-PID-*`` files of processes on this host that no longer exist."""
    pattern = f".{name}.tmp-*" if name else ".*.tmp-*"
    for tmp in folder.glob(pattern) if folder.is_dir() else ():
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        except (ValueError, IndexError, PermissionError):
            continue


def _read(path: Path, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file; any parse failure is corruption."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:
        raise CorruptStatisticsError(
            f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it to recompute"
        ) from None
    return metadata, tensors


def _check(path: Path, what: str, metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> None:
    expected = metadata.get("editkit.sha256")
    if expected is None:
        raise CorruptStatisticsError(f"{what} {path} has no editkit.sha256 checksum; delete it to recompute")
    if _sha256_tensors(tensors) != expected:
        raise CorruptStatisticsError(
            f"{what} {path} failed its checksum (tensor bytes changed since it was written); delete it to recompute"
        )


def _json_field(path: Path, what: str, metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError):
        raise CorruptStatisticsError(f"{what} {path}: metadata field {key!r} is missing or malformed") from None


@attrs.frozen(kw_only=True)
class StatsStore:
    """Statistics files under one ``root`` directory (created on first write only)."""

    root: Path = attrs.field(converter=Path)

    # ------------------------------------------------------------------ paths

    def stats_path(self, identity: Mapping[str, Any]) -> Path:
        name = f"{slug(identity['module'])}--{digest(identity)}.safetensors"
        return self.root / slug(identity["model"]["name"]) / name

    def eigh_path(self, identity: Mapping[str, Any]) -> Path:
        return self.stats_path(identity).with_suffix(".eigh.safetensors")

    def checkpoint_path(self, identities: Sequence[Mapping[str, Any]]) -> Path:
        key = digest(sorted(digest(i) for i in identities))
        return self.root / slug(identities[0]["model"]["name"]) / ".partial" / f"{key}.safetensors"

    # ------------------------------------------------------------------ statistics

    def save(
        self, identity: Mapping[str, Any], total: torch.Tensor, count: int, info: Mapping[str, Any]
    ) -> StoredStatistics:
        """Write one layer's complete statistics atomically."""
        tensors = {"total": total}
        full_info = {"editkit_version": _editkit_version(), "created": time.time(), **info}
        sha256 = _sha256_tensors(tensors)
        metadata = _with_header({
            "format": "pt",
            "editkit.kind": KIND_STATS,
            "editkit.identity": canonical_json(identity),
            "editkit.token_count": str(int(count)),
            "editkit.info": canonical_json(full_info),
            "editkit.sha256": sha256,
        })
        path = self.stats_path(identity)
        _atomic_save(path, tensors, metadata)
        return StoredStatistics(total=total, count=int(count), identity=dict(identity), info=full_info,
                                sha256=sha256, path=path)

    def load(self, identity: Mapping[str, Any]) -> StoredStatistics | None:
        """The complete statistics for exactly ``identity``, None if there are none.

        :raises CorruptStatisticsError: the file exists but is corrupt, truncated or incomplete.
        """
        path = self.stats_path(identity)
        if not path.is_file():
            return None
        return self.read(path, identity)

    def read(self, path: Path, identity: Mapping[str, Any] | None = None) -> StoredStatistics | None:
        """Read and verify a statistics file; None if ``identity`` is given and differs."""
        what = "statistics file"
        metadata, tensors = _read(path, what)
        if metadata.get("editkit.kind") != KIND_STATS or "total" not in tensors:
            raise CorruptStatisticsError(f"{path} is not a complete editkit statistics file; delete it to recompute")
        stored_identity = _json_field(path, what, metadata, "editkit.identity")
        if identity is not None and canonical_json(stored_identity) != canonical_json(identity):
            return None  # a digest collision or a hand-renamed file: never return it
        _check(path, what, metadata, tensors)
        _check_header(path, what, metadata)
        try:
            count = int(metadata["editkit.token_count"])
        except (KeyError, ValueError):
            raise CorruptStatisticsError(f"{what} {path}: token count missing or malformed") from None
        total = tensors["total"]
        d_in = stored_identity.get("d_in")
        if total.ndim != 2 or total.shape[0] != total.shape[1] or (d_in is not None and total.shape[0] != d_in):
            raise CorruptStatisticsError(f"{what} {path}: tensor shape {tuple(total.shape)} does not match d_in={d_in}")
        return StoredStatistics(
            total=total, count=count, identity=stored_identity,
            info=_json_field(path, what, metadata, "editkit.info"), sha256=metadata["editkit.sha256"], path=path,
        )

    def entries(self) -> Iterator[Path]:
        """Every complete-statistics file under the root (not eigh caches, checkpoints or temp files)."""
        if not self.root.is_dir():
            return iter(())
        return iter(sorted(p for p in self.root.glob("*/*.safetensors")
                           if not p.name.startswith(".") and not p.name.endswith(".eigh.safetensors")))

    def candidates(self) -> list[Candidate]:
        """Every complete-statistics file under the root whose header verifies, as that header describes it
        (no tensor is read; :meth:`read` checks the tensors).

        Files whose header cannot be read or does not verify are left out here (:meth:`scan` says which and
        why); reading one (:meth:`read`) raises :class:`CorruptStatisticsError`.
        """
        return self.scan()[0]

    def scan(self) -> tuple[list[Candidate], list[tuple[Path, str]]]:
        """:meth:`candidates`, and the files left out, each with the reason."""
        out, refused = [], []
        for path in self.entries():
            try:
                with safe_open(str(path), framework="pt") as fh:
                    metadata = dict(fh.metadata() or {})
            except Exception as exc:  # a damaged header: not a candidate (a lookup of exactly its key says why)
                refused.append((path, f"is corrupt or truncated ({type(exc).__name__})"))
                continue
            if metadata.get("editkit.kind") != KIND_STATS:
                continue
            problem = _header_problem(metadata)
            if problem is None:
                try:
                    out.append(Candidate(path=path, identity=json.loads(metadata["editkit.identity"]),
                                         count=int(metadata["editkit.token_count"])))
                    continue
                except (KeyError, TypeError, ValueError):
                    problem = "has a malformed identity or token count"
            refused.append((path, problem))
        return out, refused

    def adopt_older(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Give each complete statistics file (and eigendecomposition cache) that an older editkit wrote here,
        without a header checksum, the checksum of its header as it stands, so that lookups use it again.

        The caller vouches for those headers (token count, identity): this is for files this machine's own
        older editkit wrote. Each file's tensor checksum is verified first; one that fails, or whose identity or
        token count does not parse, is left as it is and returned with the reason. Files with a header checksum
        are not touched, nor eigendecomposition caches older still (without a token count: runs recompute them
        anyway). Each rewrite is atomic. Returns (adopted paths, refused paths with reasons).
        """
        adopted: list[Path] = []
        refused: list[tuple[Path, str]] = []
        files = sorted(p for p in self.root.glob("*/*.safetensors") if not p.name.startswith(".")) \
            if self.root.is_dir() else []
        for path in files:
            try:
                with safe_open(str(path), framework="pt") as fh:
                    metadata = dict(fh.metadata() or {})
            except Exception as exc:
                refused.append((path, f"is corrupt or truncated ({type(exc).__name__})"))
                continue
            if HEADER_KEY in metadata or metadata.get("editkit.kind") not in (KIND_STATS, KIND_EIGH):
                continue
            if metadata.get("editkit.kind") == KIND_EIGH and "editkit.token_count" not in metadata:
                continue  # from before eigh caches recorded their token count: never used, recomputed on first use
            what = "statistics file" if metadata.get("editkit.kind") == KIND_STATS else "eigendecomposition cache"
            try:
                metadata, tensors = _read(path, what)
                _check(path, what, metadata, tensors)
                int(metadata["editkit.token_count"])
                if metadata["editkit.kind"] == KIND_STATS:
                    json.loads(metadata["editkit.identity"])
            except CorruptStatisticsError as exc:
                refused.append((path, str(exc)))
                continue
            except (KeyError, ValueError):
                refused.append((path, "has a malformed identity or token count"))
                continue
            _atomic_save(path, tensors, _with_header(metadata))
            adopted.append(path)
        return adopted, refused

    def check_writable(self, hint: str = "") -> None:
        """Raise :class:`~editkit.errors.UsageError` (naming the root, then ``hint``) unless the root is, or can
        be made, a writable directory. Nothing is left behind: the probe is a temporary folder, removed at once.
        """
        root = self.root
        problem = None
        existing = root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if root.exists() and not root.is_dir():
            problem = "is not a directory"
        elif not existing.is_dir():
            problem = f"cannot be created: {existing} is not a directory"
        else:
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".editkit-probe-", dir=existing))
            except OSError as exc:
                where = "is not writable" if existing == root else f"cannot be created in {existing}"
                problem = f"{where}: {exc.strerror or exc}"
        if problem is not None:
            raise UsageError(f"key statistics store {root} {problem}{hint}")

    # ------------------------------------------------------------------ eigendecomposition cache

    def save_eigh(self, stats: StoredStatistics, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor) -> Path:
        tensors = {"eigenvalues": eigenvalues, "eigenvectors": eigenvectors}
        metadata = _with_header({
            "format": "pt",
            "editkit.kind": KIND_EIGH,
            "editkit.format": FORMAT,
            "editkit.statistics_sha256": stats.sha256,
            "editkit.identity_digest": digest(stats.identity),
            "editkit.token_count": str(int(stats.count)),  # C0 = total / count: the eigenvalues scale with it
            "editkit.sha256": _sha256_tensors(tensors),
        })
        path = self.eigh_path(stats.identity)
        _atomic_save(path, tensors, metadata)
        return path

    def load_eigh(self, stats: StoredStatistics) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached ``(eigenvalues, eigenvectors)`` of exactly these statistics (tensors, identity and token
        count), else None; a cache written before caches recorded the token count is not used (it is recomputed
        and overwritten by the caller)."""
        path = self.eigh_path(stats.identity)
        if not path.is_file():
            return None
        what = "eigendecomposition cache"
        metadata, tensors = _read(path, what)
        if metadata.get("editkit.kind") != KIND_EIGH or HEADER_KEY not in metadata:
            return None
        _check_header(path, what, metadata)
        if (metadata.get("editkit.statistics_sha256") != stats.sha256
                or metadata.get("editkit.identity_digest") != digest(stats.identity)
                or metadata.get("editkit.token_count") != str(int(stats.count))):
            return None  # made from other statistics: recomputed and overwritten by the caller
        _check(path, what, metadata, tensors)
        return tensors["eigenvalues"], tensors["eigenvectors"]

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(
        self,
        identities: Sequence[Mapping[str, Any]],
        totals: Mapping[str, torch.Tensor],
        *,
        position: int,
        tokens: int,
        layout: Mapping[str, Any],
    ) -> Path:
        tensors = {f"total/{module}": t for module, t in totals.items()}
        state = {
            "identities": sorted(digest(i) for i in identities),
            "position": int(position),
            "tokens": int(tokens),
            "layout": dict(layout),
            "editkit_version": _editkit_version(),
            "saved": time.time(),
        }
        metadata = _with_header({
            "format": "pt",
            "editkit.kind": KIND_CHECKPOINT,
            "editkit.checkpoint": canonical_json(state),
            "editkit.sha256": _sha256_tensors(tensors),
        })
        path = self.checkpoint_path(identities)
        _atomic_save(path, tensors, metadata)
        return path

    def load_checkpoint(self, identities: Sequence[Mapping[str, Any]]) -> Checkpoint | None:
        """The checkpoint of a collection of exactly these identities, else None."""
        path = self.checkpoint_path(identities)
        if not path.is_file():
            return None
        what = "checkpoint"
        metadata, tensors = _read(path, what)
        if metadata.get("editkit.kind") != KIND_CHECKPOINT:
            return None
        state = _json_field(path, what, metadata, "editkit.checkpoint")
        if state.get("identities") != sorted(digest(i) for i in identities):
            return None
        _check(path, what, metadata, tensors)
        _check_header(path, what, metadata, "start the collection over")
        totals = {name.removeprefix("total/"): t for name, t in tensors.items()}
        if set(totals) != {i["module"] for i in identities}:
            return None
        return Checkpoint(totals=totals, position=int(state["position"]), tokens=int(state["tokens"]),
                          layout=dict(state.get("layout", {})), path=path)

    def remove_checkpoint(self, identities: Sequence[Mapping[str, Any]]) -> None:
        """Delete the checkpoint, and temp files that killed writers left next to it."""
        path = self.checkpoint_path(identities)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _sweep_orphans(path.parent, path.name)
        _sweep_orphans(path.parent.parent, None)
