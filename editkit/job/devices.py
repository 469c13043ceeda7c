"""The ``--device`` option: a torch device string that names a device present on this machine.

Checked before any work, so that ``--device gpu0`` (not a device), ``--device cuda`` on a machine
without CUDA or ``--device cpu:1`` (torch has one CPU device, ``cpu`` = ``cpu:0``) stops with exit 2 naming
the option and what is valid, instead of a traceback or a silently different device after the model was loaded.
"""

from __future__ import annotations

from editkit.errors import UsageError

EXAMPLES = "cpu, cuda, cuda:1, mps"


def check_device(text: str, option: str = "--device") -> str:
    """``text`` unchanged if torch parses it and such a device is available here; else :class:`UsageError`."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{option} {text!r}: not a torch device; expected e.g. {EXAMPLES}") from None
    kind = device.type
    if kind == "cpu":
        if device.index not in (None, 0):
            raise UsageError(f"{option} {text!r}: torch has one CPU device, cpu (also written cpu:0); "
                             f"there is no {text}")
        return text
    if kind == "meta":
        raise UsageError(f"{option} {text!r}: the meta device holds no weights; expected e.g. {EXAMPLES}")
    backend = torch.backends.mps if kind == "mps" else getattr(torch, kind, None)
    is_available = getattr(backend, "is_available", None)
    if not callable(is_available) or not is_available():
        built = " (this torch is built without CUDA)" if kind == "cuda" and torch.version.cuda is None else ""
        raise UsageError(f"{option} {text!r}: no {kind} device is available on this machine{built}; "
                         f"use --device cpu")
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        n = count()
        raise UsageError(f"{option} {text!r}: this machine has {n} {kind} device(s): "
                         f"{', '.join(f'{kind}:{i}' for i in range(n))}")
    return text
