"""A ``.gguf`` file as an ordinary model: dequantized once into the editkit cache, then loaded from there.

``transformers`` can read a GGUF file (``from_pretrained(DIR, gguf_file=NAME)``) but dequantizes
every tensor on every load (≈20 s for SmolLM2-135M on two cores), and the model it returns refuses
``save_pretrained``. So editkit converts a file once: the weights into a model built from the same
config without the GGUF quantization marker (float32 safetensors), the tokenizer with it, written
atomically to ``$EDITKIT_CACHE/models/gguf-<sha256[:16]>/`` (keyed by the file's content, not its
path). Every later load is a plain ``from_pretrained`` of that directory, so the model's identity
in statistics keys and run journals is that of the converted weights, the same on every run.

A file that is not a readable GGUF (bad magic, truncated, tensors past its end, an architecture
``transformers`` cannot load) stops with :class:`~editkit.errors.InputError` naming it; nothing is
cached then.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from editkit.errors import InputError
from editkit.helpers.atomic import write_directory_atomic
from editkit.helpers.cachedir import cache_root

MARKER = "editkit-gguf.json"
"""Written into every converted directory: the source file's sha256, name and size, and the versions used."""
FORMAT = "editkit.gguf/1"  # the cache format (not the module path): kept, so earlier conversions stay valid


@attrs.frozen(kw_only=True)
class GgufFile:
    """A checked ``.gguf`` file: its content hash and what its header says."""

    path: Path
    sha256: str
    size_bytes: int
    architecture: str
    tensors: int


def _format_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _check_magic(path: Path) -> int:
    """``path``'s size, after checking it is a file that starts with the GGUF magic bytes."""
    if not path.is_file():
        raise InputError(f"{path}: no such .gguf file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise InputError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes; {size} bytes)")
    return size


def inspect_gguf(path: str | Path, *, sha256: str | None = None) -> GgufFile:
    """Read ``path``'s GGUF header and tensor table, check every tensor lies inside the file, hash it."""
    from gguf import GGUFReader

    from editkit.job.manifest import file_sha256

    path = Path(path)
    size = _check_magic(path)
    try:
        reader = GGUFReader(path)
        field = reader.fields.get("general.architecture")
        architecture = str(field.contents()) if field is not None else ""
        tensors = list(reader.tensors)
        ends = [int(t.data_offset) + int(t.n_bytes) for t in tensors]
    except Exception as exc:  # the reader raises ValueError/IndexError/KeyError/struct errors on damaged files
        raise InputError(f"{path}: damaged or truncated GGUF file ({exc.__class__.__name__}: {exc}); "
                         "re-download or reinstall it") from None
    if not architecture:
        raise InputError(f"{path}: the GGUF header names no general.architecture; not a model file")
    if not tensors:
        raise InputError(f"{path}: the GGUF file holds no tensors")
    if max(ends) > size:
        raise InputError(f"{path}: truncated GGUF file: its tensors need {max(ends)} bytes, the file has {size}; "
                         "re-download or reinstall it")
    return GgufFile(path=path, sha256=sha256 or file_sha256(path), size_bytes=size, architecture=architecture,
                    tensors=len(tensors))


def converted_directory(sha256: str, root: Path | None = None) -> Path:
    """Where the conversion of the file with this sha256 lives (``$EDITKIT_CACHE/models/gguf-<sha256[:16]>``)."""
    return (root or cache_root()) / "models" / f"gguf-{sha256[:16]}"


def cached_conversion(sha256: str, root: Path | None = None) -> Path | None:
    """The finished conversion of the file with this sha256 in the cache, or None."""
    directory = converted_directory(sha256, root)
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("format") != FORMAT or marker.get("sha256") != sha256:
        return None
    if not all((directory / name).is_file() for name in ("config.json", "model.safetensors")):
        return None
    return directory


def materialise_gguf(path: str | Path, *, progress: bool | None = None, root: Path | None = None) -> Path:
    """The ``save_pretrained`` directory of ``path``'s model, converting it first when it is not cached.

    ``progress``: ``transformers``' per-tensor bar on a terminal (default: when stderr is one); stage
    lines (what, how long) are printed on stderr either way when a conversion runs.
    """
    from editkit.job.manifest import file_sha256

    path = Path(path)
    _check_magic(path)
    sha256 = file_sha256(path)
    cached = cached_conversion(sha256, root)
    if cached is not None:  # keyed by content: the header was checked when it was converted
        return cached
    info = inspect_gguf(path, sha256=sha256)
    target = converted_directory(info.sha256, root)
    show_bar = sys.stderr.isatty() if progress is None else progress
    say = _stage_printer()
    say(f"converting {info.path.name} ({_format_size(info.size_bytes)}, {info.architecture}, {info.tensors} tensors) "
        f"once into {target}")
    started = time.perf_counter()
    write_directory_atomic(target, lambda tmp: convert_gguf(info, tmp, show_bar=show_bar, say=say))
    say(f"converted {info.path.name} in {time.perf_counter() - started:.1f} s; later loads read {target}")
    return target


def _stage_printer() -> Callable[[str], None]:
    def say(text: str) -> None:
        print(f"editkit: {text}", file=sys.stderr, flush=True)

    return say


@contextlib.contextmanager
def _quiet_unless(show: bool):  # type: ignore[no-untyped-def]
    """Swallow what ``transformers`` prints on stderr (its tqdm bars) unless ``show``."""
    if show:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def convert_gguf(info: GgufFile, directory: Path, *, show_bar: bool = False,
                 say: Callable[[str], None] = lambda _text: None) -> Path:
    """Dequantize ``info``'s model and tokenizer to float32 and ``save_pretrained`` them into ``directory``."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from editkit.helpers.atomic import write_json_atomic

    folder, name = str(info.path.parent), info.path.name
    t = time.perf_counter()
    try:
        with _quiet_unless(show_bar):
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        say(f"  tokenizer read ({len(tokenizer)} tokens, {time.perf_counter() - t:.1f} s)")
        t = time.perf_counter()
        with _quiet_unless(show_bar):
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError) as exc:
        raise InputError(f"{info.path}: transformers cannot load this GGUF model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    say(f"  weights dequantized to float32 ({sum(p.numel() for p in loaded.parameters()):,} parameters, "
        f"{time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    model = _plain_copy(loaded, copy.deepcopy(loaded.config))
    del loaded
    with _quiet_unless(show_bar):
        model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
    write_json_atomic(directory / MARKER, {
        "format": FORMAT, "sha256": info.sha256, "source": str(info.path), "file": info.path.name,
        "size_bytes": info.size_bytes, "architecture": info.architecture, "dtype": "float32",
        "transformers": _version("transformers"), "gguf": _version("gguf"), "torch": _version("torch"),
    })
    for file in directory.iterdir():
        file.chmod(0o644)  # ordinary cache files (safetensors and mkstemp write 0600)
    say(f"  saved as safetensors ({time.perf_counter() - t:.1f} s)")
    return directory


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _plain_copy(loaded: Any, config: Any) -> Any:
    """The same model without the GGUF quantization marker (so it saves), sharing nothing with ``loaded``."""
    import torch
    from transformers import AutoModelForCausalLM

    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    return model.eval()
