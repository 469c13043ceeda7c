"""The eigenvalue spectrum of C0 in a few numbers, and the null-space size at a threshold.

AlphaEdit's projector keeps the eigenvectors of the *mean* moment C0 whose eigenvalues are
below an absolute threshold τ (default 2e-2); :attr:`SpectrumSummary.null_space` is how many.
:func:`spectrum_profile` keeps a few hundred of the sorted eigenvalues, enough to plot the spectrum
(``editkit report``) from ``result.json``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

DEFAULT_THRESHOLD = 2e-2


@attrs.frozen(kw_only=True)
class SpectrumSummary:
    """Eigenvalue quantiles of C0 (ascending) and the null-space size below ``threshold``."""

    d_in: int
    tokens: int
    minimum: float
    p10: float
    median: float
    p90: float
    maximum: float
    threshold: float
    null_space: int  # eigenvalues < threshold

    @classmethod
    def from_eigenvalues(cls, eigenvalues: torch.Tensor, *, tokens: int, threshold: float) -> SpectrumSummary:
        values = eigenvalues.detach().to("cpu", torch.float64)  # [d_in], ascending
        q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        return cls(
            d_in=int(values.numel()), tokens=int(tokens), minimum=float(values.min()), p10=float(q[0]),
            median=float(q[1]), p90=float(q[2]), maximum=float(values.max()), threshold=float(threshold),
            null_space=int((values < threshold).sum()),
        )

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


PROFILE_POINTS = 128


def spectrum_profile(eigenvalues: torch.Tensor, *, threshold: float, points: int = PROFILE_POINTS) -> dict[str, Any]:
    """The ascending eigenvalues ``[d_in]`` at ``points`` evenly spaced ranks (first and last included; all of
    them when ``d_in <= points``), 4 significant figures, with the absolute ``threshold`` and how many
    eigenvalues lie below it (the null-space size). Small enough for every layer's notes in ``result.json``."""
    values = eigenvalues.detach().to("cpu", torch.float64).sort().values  # [d_in]
    n = int(values.numel())
    if n == 0:
        raise ValueError("an empty spectrum")
    index = list(range(n)) if n <= points else sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    return {
        "d_in": n,
        "threshold": float(threshold),
        "null_space": int((values < threshold).sum()),
        "index": index,
        "eigenvalues": [float(f"{float(values[i]):.4g}") for i in index],
    }
