"""The on-disk cache of the built world model, built atomically and verified on load.

Location: ``$EDITKIT_CACHE/world/<tag>`` (``EDITKIT_CACHE`` defaults to ``~/.cache/editkit``),
where ``<tag>`` is :meth:`BuildConfig.tag` (format version, seed, config hash).

Atomicity: a build runs in a temporary sibling directory ``.<tag>.tmp-<pid>-<random>``; when
the model, tokenizer and report are written, a ``manifest.json`` with the sha256 of every file
is written last and the directory is moved into place with ``os.replace``. The final
directory therefore either does not exist or is complete; a build that is interrupted leaves
at most a temporary directory, which is never loaded and is removed by the next build once
its process is gone. Loading verifies every checksum (and that the world generator still
produces the world the model was trained on); a corrupt or stale entry is rebuilt with a
warning.
"""

from __future__ import annotations

import contextlib
import json
import time
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from editkit.api import CACHE_ENV, EditkitError, cache_root, file_sha256, write_directory_atomic
from editkit_world.config import FORMAT_VERSION, BuildConfig
from editkit_world.world import World, WorldConfig

__all__ = [
    "CACHE_ENV",
    "MANIFEST_FILE",
    "CorruptCacheError",
    "LoadedWorld",
    "Manifest",
    "build_cached",
    "load_world",
    "verify_cache",
    "world_cache_dir",
    "world_info",
]

MANIFEST_FILE = "manifest.json"


class CorruptCacheError(EditkitError):
    """A cache directory is incomplete, altered, or was built by another generator version."""


@attrs.frozen(kw_only=True)
class Manifest:
    """What a cache directory holds: written last, so its presence marks a complete build.

    Attributes:
        format_version: :data:`~editkit_world.config.FORMAT_VERSION` of the code that built it.
        tag: the cache tag (:meth:`BuildConfig.tag`).
        config: the :class:`BuildConfig` as a dict.
        world_fingerprint: :meth:`World.fingerprint` of the world the model learned.
        files: relative path → sha256 of every other file in the directory.
        report: the :class:`~editkit_world.train.BuildReport` as a dict.
        created: UTC time of the build (ISO 8601).
    """

    format_version: int
    tag: str
    config: dict[str, Any] = attrs.field(repr=False)
    world_fingerprint: str
    files: Mapping[str, str] = attrs.field(converter=lambda m: types.MappingProxyType(dict(m)), repr=False)
    report: dict[str, Any] = attrs.field(repr=False)
    created: str

    @property
    def build_config(self) -> BuildConfig:
        return BuildConfig.from_dict(self.config)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["files"] = dict(self.files)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(**{f.name: data[f.name] for f in attrs.fields(cls)})

    @classmethod
    def of_directory(cls, directory: Path, *, report: dict[str, Any]) -> Manifest:
        """Hash every file under ``directory`` (the manifest itself excluded)."""
        files = {
            p.relative_to(directory).as_posix(): file_sha256(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST_FILE
        }
        config = report["config"]
        return cls(
            format_version=FORMAT_VERSION,
            tag=BuildConfig.from_dict(config).tag(),
            config=config,
            world_fingerprint=report["world_fingerprint"],
            files=files,
            report=report,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )


class LoadedWorld(NamedTuple):
    """What :func:`load_world` returns (unpacks as ``model, tokenizer, world, manifest``)."""

    model: Any
    tokenizer: Any
    world: World
    manifest: Manifest


def world_cache_dir(config: BuildConfig | None = None) -> Path:
    """``$EDITKIT_CACHE/world/<tag>`` for ``config`` (default :class:`BuildConfig` ``()``)."""
    return cache_root() / "world" / (config or BuildConfig()).tag()


def verify_cache(directory: str | Path) -> Manifest:
    """Check a cache directory against its manifest; raise :class:`CorruptCacheError` if it fails."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CorruptCacheError(f"{directory}: no {MANIFEST_FILE} (not a complete build)") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CorruptCacheError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.format_version != FORMAT_VERSION:
        raise CorruptCacheError(f"{directory}: built by format {manifest.format_version}, code is {FORMAT_VERSION}")
    for name, digest in manifest.files.items():
        file = directory / name
        if not file.is_file():
            raise CorruptCacheError(f"{file}: listed in the manifest but missing")
        if file_sha256(file) != digest:
            raise CorruptCacheError(f"{file}: checksum mismatch")
    return manifest


def build_cached(directory: str | Path, config: BuildConfig | None = None, *, progress: bool = True) -> Manifest:
    """Build the world model for ``config`` into ``directory`` atomically; return its manifest."""
    from editkit_world.train import build_world_model  # torch is imported only when building

    def fill(tmp: Path) -> None:
        report = build_world_model(tmp, config=config or BuildConfig(), progress=progress)
        manifest = Manifest.of_directory(tmp, report=report.to_dict())
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")

    write_directory_atomic(directory, fill)
    return verify_cache(directory)  # ours, or another process's that was installed first


def load_world(cache: str | Path | None = None, *, build_if_missing: bool = True,
               config: BuildConfig | None = None, progress: bool = True) -> LoadedWorld:
    """Load the world model, tokenizer, world and manifest, building them first if needed.

    ``cache`` is the model directory (default :func:`world_cache_dir` of ``config``). With
    ``build_if_missing`` a missing, corrupt or stale directory is (re)built (a corrupt one
    with a ``RuntimeWarning``); without it, :class:`CorruptCacheError` or
    ``FileNotFoundError`` is raised. When ``config`` is given, an entry built from another
    config counts as stale; when it is not, whatever build ``cache`` holds is loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(cache) if cache is not None else world_cache_dir(config)
    manifest = world = None
    if directory.exists():
        try:
            manifest = verify_cache(directory)
            if config is not None and manifest.config != config.to_dict():
                raise CorruptCacheError(f"{directory}: built from another config ({manifest.tag})")
            world = World.generate(WorldConfig(**manifest.config["world"]))
            if world.fingerprint() != manifest.world_fingerprint:
                raise CorruptCacheError(f"{directory}: the world generator changed since this build")
        except CorruptCacheError as exc:
            if not build_if_missing:
                raise
            warnings.warn(f"{exc}; rebuilding", RuntimeWarning, stacklevel=2)
            manifest = None
    elif not build_if_missing:
        raise FileNotFoundError(f"{directory}: no world model built (call load_world() or build_cached())")
    if manifest is None:
        manifest = build_cached(directory, config or _config_of(directory), progress=progress)
        world = World.generate(WorldConfig(**manifest.config["world"]))
    assert world is not None  # for type checkers: set on every path above
    model = AutoModelForCausalLM.from_pretrained(directory)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return LoadedWorld(model=model, tokenizer=tokenizer, world=world, manifest=manifest)


def _config_of(directory: Path) -> BuildConfig:
    """The config recorded in a (possibly corrupt) manifest, else the default."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        return BuildConfig.from_dict(json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))["config"])
    return BuildConfig()


def world_info(cache: str | Path | None = None, *, config: BuildConfig | None = None) -> dict[str, Any]:
    """Describe the cache entry without building or loading a model (for ``editkit`` CLI output)."""
    directory = Path(cache) if cache is not None else world_cache_dir(config)
    info: dict[str, Any] = {"directory": str(directory), "exists": directory.is_dir(), "valid": False}
    if not directory.is_dir():
        return info
    try:
        manifest = verify_cache(directory)
    except CorruptCacheError as exc:
        info["problem"] = str(exc)
        return info
    report = manifest.report
    info.update(
        valid=True,
        tag=manifest.tag,
        created=manifest.created,
        size_bytes=sum((directory / name).stat().st_size for name in manifest.files),
        files=sorted(manifest.files),
        config=manifest.config,
        **{key: report[key] for key in ("n_params", "epochs", "train_recall", "heldout_recall",
                                        "true_object_median_prob", "wrong_object_median_prob", "build_seconds")},
    )
    return info
