"""Run manifests: versions, git commit, configuration, seeds, input identities, and the plugins used (which
distribution and version provided each)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editkit.allocator import describe as describe_allocator

if TYPE_CHECKING:
    from editkit.plugins import PluginHost


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
        "allocator": describe_allocator(),
        **sections,
    }


def plugins_used(host: PluginHost, *, editor: str, constraints: Sequence[str], metrics: Sequence[str],
                 dataset: str | None = None, model: str | None = None, corpus: str | None = None) -> dict[str, Any]:
    """Which plugin, distribution and version provided each method and input a run used
    (:meth:`~editkit.plugins.PluginHost.origin`): the editor, the constraints (in the run's order), the metrics,
    the dataset (a dataset file: the plugin that read it, with ``"file"``), the model when a plugin registered
    it by name (``model_source``), and the corpus when it is a registered dataset; None where there is none."""
    from editkit.job.datasetdefaults import dataset_reader

    datasets = host.catalog.entries["datasets"]
    read: dict[str, Any] | None = None
    if dataset is not None:
        if dataset in datasets:
            read = host.origin("datasets", dataset)
        else:
            reader = dataset_reader(datasets)
            read = {**(host.origin("datasets", reader.name) or {}), "file": dataset} if reader else {"file": dataset}
    return {
        "editor": host.origin("editors", editor),
        "constraints": [host.origin("constraints", name) for name in constraints],
        "metrics": [host.origin("metrics", name) for name in metrics],
        "dataset": read,
        "model_source": host.origin("models", model) if model is not None else None,
        "corpus": host.origin("datasets", corpus) if corpus is not None and corpus in datasets else None,
    }
