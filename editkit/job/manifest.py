"""Run manifests: versions, git commit, configuration, seeds and input identities."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(path: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_identity(name_or_path: str) -> dict[str, Any]:
    """Name, and for a local directory ``weight_files_sha256``: the sha256 of each weight file's bytes
    (not a hash of tensors: the journal's ``edited_modules_sha256`` hashes the edited modules' weight
    tensors, the key statistics' ``model.weights_sha256`` every parameter and buffer)."""
    path = Path(name_or_path)
    identity: dict[str, Any] = {"name": name_or_path}
    if path.is_dir():
        identity["weight_files_sha256"] = {
            f.name: file_sha256(f) for f in sorted(path.iterdir()) if f.suffix in {".safetensors", ".bin"}
        }
    return identity


def manifest(**sections: Any) -> dict[str, Any]:
    return {
        "versions": {
            "editkit": _version("editkit"),
            "torch": _version("torch"),
            "transformers": _version("transformers"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "git_commit": git_commit(),
        **sections,
    }
