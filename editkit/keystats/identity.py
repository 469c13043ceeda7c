"""What a statistics file holds, as a JSON-able identity, and the digest the store looks it up by.

The identity of one layer's statistics names everything the numbers depend on: the model
(name, hub revision if known, sha256 of every parameter and buffer, of its config and of its
tokenizer), the hooked module, the corpus selection (:meth:`CorpusSpec.identity`), the
truncation length, the token budget, the accumulation dtype and :data:`FORMAT` (bumped when
the collection algorithm changes what is computed). Batch size and the number of ranks only
change float summation order, so they are not part of it. Two identities match only when
they are equal as JSON; the store never returns a file whose stored identity differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "editkit.keystats/1"
_CONFIG_VOLATILE = ("_name_or_path", "transformers_version", "_commit_hash", "_attn_implementation_autoset")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(value: Any, length: int = 24) -> str:
    """Short sha256 hex digest of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (moved to CPU, contiguous; no copy when already so)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor_bytes(tensor)).hexdigest()


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes); hashed in threads."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.data_ptr() in seen and tensor.numel() > 0:  # tied weights
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    names = sorted(tensors)
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:  # hashlib drops the GIL
        digests = list(pool.map(lambda n: tensor_sha256(tensors[n]), names))
    outer = hashlib.sha256()
    for name, inner in zip(names, digests):
        t = tensors[name]
        outer.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{inner}\n".encode())
    return outer.hexdigest()


def config_sha256(model: torch.nn.Module) -> str | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    data = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_VOLATILE}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    """sha256 of the tokenizer's full definition (fast tokenizers) or vocabulary and specials."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        definition = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # set per call by transformers, not part of the tokenizer
            definition.pop(transient, None)
        body = canonical_json(definition)
    else:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        body = canonical_json(sorted(vocab.items()))
    specials = getattr(tokenizer, "special_tokens_map", {})
    extra = canonical_json({"class": type(tokenizer).__name__, "specials": specials})
    return hashlib.sha256((body + extra).encode()).hexdigest()


def model_identity(model: torch.nn.Module, tokenizer: Any, model_id: str) -> dict[str, Any]:
    """The model part of an identity (hashes every weight once; callers memoise it)."""
    config = getattr(model, "config", None)
    first = next(model.parameters(), None)
    return {
        "name": model_id or getattr(config, "_name_or_path", "") or type(model).__name__,
        "revision": getattr(config, "_commit_hash", None),
        "weights_sha256": weights_sha256(model),
        "config_sha256": config_sha256(model),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "param_dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
    }


def site_identity(
    *,
    model: dict[str, Any],
    module: str,
    layer: int,
    d_in: int,
    corpus: dict[str, Any],
    max_length: int,
    max_tokens: int | None,
    dtype: str,
) -> dict[str, Any]:
    """The full lookup identity of one layer's statistics."""
    return {
        "format": FORMAT,
        "model": model,
        "module": module,
        "layer": layer,
        "d_in": d_in,
        "corpus": corpus,
        "max_length": max_length,
        "max_tokens": max_tokens,
        "dtype": dtype,
    }
