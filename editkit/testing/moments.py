"""An in-memory key-statistics provider for tests: C0 from a few texts, by explicit hooks.

:class:`MomentsFromText` implements what :class:`~editkit.run.EditRun` and plugins call on a
key-statistics provider (``prepare``, ``second_moment``, ``eigendecomposition``) without a
store or a corpus on disk, so a test edit needs nothing but a model and a tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import torch

from editkit.converters import to_tuple
from editkit.helpers.tokens import encode
from editkit.helpers.tracing import capture_inputs
from editkit.sites import Site


@attrs.define(kw_only=True)
class MomentsFromText:
    """``C0 = mean k kᵀ`` over every non-pad token of ``texts``, per site, in float64.

    ``k`` is the input of the site's module (``[d_in]``), captured with
    :func:`editkit.helpers.tracing.capture_inputs` on ``model``. Moments are computed once per site and
    cached, so they stay those of the model as it was at :meth:`prepare` (the kernel calls
    ``prepare(sites)`` when the run is created, before any edit). ``prepared`` lists the modules
    prepared so far, in order.
    """

    model: Any = attrs.field(repr=False)
    tokenizer: Any = attrs.field(repr=False)
    texts: tuple[str, ...] = attrs.field(converter=to_tuple)
    _cache: dict[str, torch.Tensor] = attrs.field(factory=dict, init=False, repr=False)
    prepared: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.texts:
            raise ValueError("MomentsFromText needs at least one text")

    def prepare(self, sites: Iterable[Site]) -> None:
        """Compute and cache C0 of every site in one forward pass (the unedited model)."""
        missing = [s for s in sites if s.module not in self._cache]
        if missing:
            self._collect(missing)
        self.prepared.extend(s.module for s in missing)

    def second_moment(self, site: Site) -> torch.Tensor:
        """C0 of ``site``: float64 ``[d_in, d_in]``, symmetric positive semi-definite."""
        if site.module not in self._cache:
            self._collect([site])
        return self._cache[site.module]

    def eigendecomposition(self, site: Site) -> tuple[torch.Tensor, torch.Tensor]:
        """``torch.linalg.eigh(C0)``: eigenvalues ``[d_in]`` ascending, eigenvectors ``[d_in, d_in]`` (columns)."""
        return torch.linalg.eigh(self.second_moment(site))

    def identity(self, site: Site) -> dict[str, Any]:
        """What these statistics are, for a run's manifest."""
        return {"provider": "editkit.testing.MomentsFromText", "texts": len(self.texts), "module": site.module}

    def _collect(self, sites: Sequence[Site]) -> None:
        batch = encode(self.tokenizer, list(self.texts))
        mask = batch.attention_mask.flatten().bool()
        modules = [s.module for s in sites]
        with capture_inputs(self.model, modules) as captured, torch.no_grad():
            self.model(**batch.model_inputs())
        for site in sites:
            keys = captured[site.module].reshape(-1, site.d_in)[mask].double()  # [tokens, d_in]
            self._cache[site.module] = keys.T @ keys / keys.shape[0]


class KnownSpectrum:
    """C0 with a spectrum chosen by the test, the same at every site: eigenvectors the columns of ``basis``
    (orthonormal, ``[d_in, d_in]``), eigenvalues ``floor`` on the first ``d_in − rank`` (the null space a
    threshold above ``floor`` finds) and 1 on the last ``rank``, ascending as ``torch.linalg.eigh`` gives them.
    Kept on the CPU in float64, as the stored statistics are."""

    def __init__(self, basis: torch.Tensor, rank: int, floor: float = 1e-6) -> None:
        d = basis.shape[0]
        if not 0 <= rank <= d:
            raise ValueError(f"rank {rank} outside 0..{d}")
        self.evals = torch.cat([torch.full((d - rank,), floor), torch.ones(rank)]).double()  # [d_in]
        self.evecs = basis.double()  # [d_in, d_in]

    def second_moment(self, site: Site) -> torch.Tensor:
        """``V diag(λ) Vᵀ`` ``[d_in, d_in]``."""
        return (self.evecs * self.evals) @ self.evecs.T

    def eigendecomposition(self, site: Site) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues ``[d_in]`` ascending, eigenvectors ``[d_in, d_in]`` (columns), as ``torch.linalg.eigh``."""
        return self.evals, self.evecs
