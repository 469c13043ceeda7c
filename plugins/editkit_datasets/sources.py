"""Where the real datasets live: local files, or a cache filled once from the official source.

``resolve("counterfact")`` returns the cached file, downloading it first when the network
allows (its sha256 is recorded next to it and checked on every later use); offline, the error
says where to put the file.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from editkit.api import InputError, cache_root, file_sha256, write_atomic, write_json_atomic

OFFICIAL = {
    "counterfact": "https://rome.baulab.info/data/dsets/counterfact.json",
    "zsre": "https://rome.baulab.info/data/dsets/zsre_mend_eval.json",
    "knowedit": "https://huggingface.co/datasets/zjunlp/KnowEdit/resolve/main/benchmark/ZsRE/ZsRE-test-all.json",
}


def cache_dir() -> Path:
    return cache_root() / "datasets"


def resolve(name: str, source: str | None = None, *, timeout: float = 30.0) -> Path:
    """A local path for dataset ``name``: ``source`` if it is a file, else the verified cache."""
    if source is not None:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{source}: no such dataset file")
        return path
    target = cache_dir() / f"{name}.json"
    checksum = target.with_suffix(".sha256.json")
    if target.exists():
        if checksum.exists() and json.loads(checksum.read_text())["sha256"] != file_sha256(target):
            raise InputError(f"{target}: checksum mismatch with {checksum}; delete both to download again")
        return target
    url = OFFICIAL[name]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except OSError as exc:
        raise InputError(
            f"dataset {name!r} is not cached and could not be downloaded from {url} ({exc.__class__.__name__}: "
            f"{exc}); download it elsewhere and put it at {target}, or pass --dataset /path/to/file.json"
        ) from None
    write_atomic(target, lambda p: p.write_bytes(data))
    write_json_atomic(checksum, {"url": url, "sha256": file_sha256(target)})
    return target
