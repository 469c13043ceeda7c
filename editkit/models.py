"""Loading models the way the hub does: ``AutoModelForCausalLM`` / ``AutoTokenizer``.

A local directory written by ``save_pretrained`` and a hub name take the same path; on a
machine without network a hub name that is not cached fails with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from editkit.errors import InputError

DTYPES = ("float32", "float64", "bfloat16", "float16")


def load_model(name_or_path: str, *, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    local = Path(name_or_path)
    if local.exists() and not (local / "config.json").exists():
        raise InputError(f"{name_or_path}: a directory without config.json is not a saved model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype))
    except OSError as exc:
        raise InputError(
            f"cannot load model {name_or_path!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]} "
            "(a local directory from save_pretrained, or a hub name already in the cache when offline)"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
