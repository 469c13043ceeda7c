"""Loading models: ``--model`` is a registered name, a ``save_pretrained`` directory, a ``.gguf`` file or a hub id.

:func:`resolve_model` decides, in that order, what ``--model`` names and returns the location an
ordinary ``from_pretrained`` reads: a registered model (``editkit models``) or a ``.gguf`` file is
first converted once into the editkit cache (:mod:`editkit.modelsource.gguf`) and loaded from there, so every
command sees a plain directory and the model's identity is that of the converted weights.
:func:`load_model` is the one loader every command uses. A local directory is checked before
loading (``config.json``, tokenizer files, complete safetensors files), so a damaged model stops
with exit 2 naming the file instead of a traceback.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import attrs

from editkit.errors import InputError

DTYPES = ("float32", "float64", "bfloat16", "float16")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
"""``name`` or ``namespace/name``: the only strings that can be hub ids (not paths)."""
_VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                     "sentencepiece.bpe.model", "tekken.json")


@attrs.frozen(kw_only=True)
class ModelSource:
    """What a ``--model`` string resolved to.

    ``kind`` is ``registered``, ``directory``, ``gguf`` or ``hub``; ``location`` is what
    ``from_pretrained`` reads (a directory, or the hub id); ``gguf_sha256`` the source file's hash
    when the model was converted from a ``.gguf`` file.
    """

    requested: str
    kind: str = attrs.field(validator=attrs.validators.in_(("registered", "directory", "gguf", "hub")))
    location: str
    gguf_sha256: str | None = None


def resolve_model(name_or_path: str | Path, *, catalog: Any = None, progress: bool | None = None,
                  config_only: bool = False) -> ModelSource:
    """Resolve ``--model``: a registered name → a ``save_pretrained`` directory → a ``.gguf`` file → a hub id.

    ``catalog``: the plugin catalog to look registered names up in (default: the installed plugins').
    A registered model that is not installed stops with its install command; a ``.gguf`` (registered
    or given as a path) is converted into the cache when it is not there yet. With ``config_only``
    (``inspect --plan``) nothing is converted (a ``.gguf`` source's ``location`` is the file itself) and
    a directory needs only its ``config.json``.
    """
    requested = str(name_or_path)
    if not requested.strip():
        raise InputError("--model is empty: give a registered model name (see `editkit models`), a "
                         "save_pretrained directory, a .gguf file or a hub id")
    models = _registered(catalog)
    if requested in models:
        spec = models[requested]
        if not spec.installed():
            raise InputError(f"model {requested!r} is not installed; install it with:  {spec.install}")
        path = Path(spec.path())
        if path.is_file():
            return _from_gguf(requested, path, "registered", progress, not config_only)
        check_model_directory(path, what=f"model {requested!r} ({path})", config_only=config_only)
        return ModelSource(requested=requested, kind="registered", location=str(path))
    local = Path(requested).expanduser()
    if local.is_dir():
        check_model_directory(local, config_only=config_only)
        location = str(local) if requested.startswith("~") else requested  # as given: the identity stays the same
        return ModelSource(requested=requested, kind="directory", location=location)
    if local.is_file():
        if local.suffix.lower() == ".gguf" or _starts_with_gguf_magic(local):
            return _from_gguf(requested, local, "gguf", progress, not config_only)
        raise InputError(f"--model {requested}: a file that is not a .gguf model; give a save_pretrained directory, "
                         "a .gguf file, a registered model name or a hub id")
    if local.suffix.lower() == ".gguf" or not _HUB_ID.match(requested) or requested.startswith((".", "~")):
        known = ", ".join(sorted(models)) or "none installed"
        raise InputError(f"--model {requested}: no such file or directory (and not a registered model name: "
                         f"{known}; see `editkit models`)")
    return ModelSource(requested=requested, kind="hub", location=requested)


def _registered(catalog: Any) -> dict[str, Any]:
    if catalog is None:
        from editkit.plugins import PluginHost

        catalog = PluginHost().catalog
    return dict(catalog.entries.get("models", {}))


def _starts_with_gguf_magic(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def _from_gguf(requested: str, path: Path, kind: str, progress: bool | None, convert: bool) -> ModelSource:
    from editkit.modelsource.gguf import inspect_gguf, materialise_gguf

    if not convert:
        info = inspect_gguf(path)
        return ModelSource(requested=requested, kind=kind, location=str(path), gguf_sha256=info.sha256)
    directory = materialise_gguf(path, progress=progress)
    return ModelSource(requested=requested, kind=kind, location=str(directory), gguf_sha256=_marker_sha(directory))


def _marker_sha(directory: Path) -> str | None:
    from editkit.modelsource.gguf import MARKER

    try:
        return json.loads((directory / MARKER).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return None


def check_model_directory(directory: str | Path, *, what: str | None = None, config_only: bool = False) -> None:
    """Stop (exit 2) on a directory that cannot be a complete ``save_pretrained`` model, naming what is missing
    (with ``config_only``: that has no ``config.json``)."""
    directory = Path(directory)
    what = what or str(directory)
    if not directory.is_dir():
        raise InputError(f"{what}: no such directory")
    if not (directory / "config.json").is_file():
        raise InputError(f"{what}: a directory without config.json is not a saved model")
    if config_only:
        return
    if not any((directory / name).is_file() for name in _VOCABULARY_FILES) and not any(directory.glob("*.tiktoken")):
        raise InputError(f"{what}: no tokenizer files (expected one of {', '.join(_VOCABULARY_FILES)}); save the "
                         "tokenizer into the same directory with tokenizer.save_pretrained(DIR)")
    for file in sorted(directory.glob("*.safetensors")):
        check_safetensors_file(file)


def check_safetensors_file(path: Path) -> None:
    """The header parses and every tensor it lists lies inside the file (a truncated download does not)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            (length,) = struct.unpack("<Q", raw)
            if length > size - 8:
                raise ValueError(f"header length {length} exceeds the file")
            header = json.loads(fh.read(length))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc}); re-save or re-download it") from None
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        raise InputError(f"{path}: truncated safetensors file: {size} bytes, its header describes {needed}; "
                         "re-save or re-download it")


def load_model(name_or_path: str | Path | ModelSource, *, device: str = "cpu", dtype: str = "float32",
               catalog: Any = None, progress: bool | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode on ``device``, for anything :func:`resolve_model` accepts."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    source = name_or_path if isinstance(name_or_path, ModelSource) else resolve_model(
        name_or_path, catalog=catalog, progress=progress)
    return load_resolved(source, device=device, dtype=dtype)


def load_resolved(source: ModelSource, *, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """Load what :func:`resolve_model` returned."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = source.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
    except OSError as exc:
        if source.kind == "hub":
            raise InputError(
                f"cannot load model {source.requested!r}: not a registered model name (see `editkit models`), not "
                f"a local directory or .gguf file, and not a hub model available here ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}; offline, only models already in the hub cache load)"
            ) from None
        raise InputError(f"cannot load model {source.requested!r} from {location}: {exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0]}") from None
    except (ValueError, SafetensorError) as exc:  # a damaged config or weights file: name it, no traceback
        raise InputError(f"cannot load model {source.requested!r} from {location}: {exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not tokenizer("The capital of France", add_special_tokens=False)["input_ids"]:
        raise InputError(f"model {source.requested!r} ({location}): its tokenizer turns text into no tokens (no "
                         "tokenizer files saved with the model?)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers' typed `to` wrapper
