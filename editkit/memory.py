"""Peak memory, per stage: CUDA allocator peaks on GPUs, the process's peak RSS on CPU.

On CPU the peak RSS never goes down, so a stage's figure is the process peak at the stage's
end; stages that raise it are the ones that need the memory.
"""

from __future__ import annotations

import resource
import sys

import torch


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def sequential_state_bytes(d_in: int, n_sites: int, *, stats_dtype_bytes: int = 4) -> dict[str, int]:
    """Memory of the per-site state MEMIT/AlphaEdit keep, for ``n_sites`` matrices with inputs of
    width ``d_in``: C0 (stats dtype), its eigendecomposition cache (float64 values and vectors),
    the null-space basis (≤ half of d_in², float64: the smaller of P's two bases), Cp (float64)."""
    d2 = d_in * d_in
    return {
        "C0": n_sites * d2 * stats_dtype_bytes,
        "eigendecomposition": n_sites * (d2 + d_in) * 8,
        "projector_basis_max": n_sites * (d2 // 2) * 8,
        "Cp": n_sites * d2 * 8,
    }
