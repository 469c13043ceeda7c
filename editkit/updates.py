"""Update proposals threaded through ``editkit_constrain_update``, undo records, and the write of an update
(:func:`add_exactly`).

Shapes (math layout, ``v = W k``): target values ``[u, d_model]``, keys ``K`` ``[d_in, u]``,
residual ``R`` ``[d_out, u]``,
``Δ`` ``[d_out, d_in]``, preservation moments ``[d_in, d_in]``, subspace bases ``[d_in, r]``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch

from editkit.converters import to_tuple
from editkit.sites import Site


def add_exactly(weight: torch.Tensor, delta: torch.Tensor) -> None:
    """``weight ← fl(weight + Δ)`` in place: the sum in float64 on the weight's device, rounded once to the
    weight's dtype, so the written weight is within half an ulp of the exact sum however large Δ is (rounding Δ
    first would err by ulps of Δ — far more when a constraint writes W0 + F(Δ_n) over a large accumulated
    update). ``delta`` (same shape, any dtype and device) is not modified. The kernel's write, a journal's
    replay and ``editkit apply``/``revert`` all use it, so they end at bit-identical weights. Call under
    ``torch.no_grad()``."""
    exact = delta.to(device=weight.device, dtype=torch.float64, copy=True)
    weight.copy_(exact.add_(weight).to(weight.dtype))


@attrs.frozen(kw_only=True)
class Subspace:
    """A row subspace ``S_P = {X : X = X P}`` of updates, ``P`` a symmetric idempotent projector.

    Stored factored as the smaller of two orthonormal bases: ``kind="range"`` means
    ``P = Q Qᵀ``; ``kind="complement"`` means ``P = I − Q Qᵀ``. ``Q`` is ``[d_in, r]``.
    """

    basis: torch.Tensor = attrs.field(eq=False, repr=False)
    kind: Literal["range", "complement"] = attrs.field(validator=attrs.validators.in_(("range", "complement")))

    @property
    def dim(self) -> int:
        """Dimension of range(P)."""
        d_in, r = self.basis.shape
        return r if self.kind == "range" else d_in - r

    @property
    def ambient(self) -> int:
        return int(self.basis.shape[0])

    def project_rows(self, delta: torch.Tensor) -> torch.Tensor:
        """``Δ P`` for ``Δ`` ``[d_out, d_in]``, without forming ``P``; on Δ's device (the basis may be kept
        on the CPU while the weights, and so a written Δ, are on a GPU)."""
        q = self.basis.to(device=delta.device, dtype=delta.dtype)
        inner = (delta @ q) @ q.T
        return inner if self.kind == "range" else delta - inner

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Dense ``P`` ``[d_in, d_in]`` (for tests and small models)."""
        q = self.basis.to(dtype)
        qq = q @ q.T
        return qq if self.kind == "range" else torch.eye(q.shape[0], dtype=dtype) - qq

    def range_basis(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Orthonormal basis ``[d_in, dim]`` of range(P)."""
        q = self.basis.to(dtype)
        if self.kind == "range":
            return q
        # complement of span(Q): eigenvectors of I - QQᵀ with eigenvalue 1
        evals, evecs = torch.linalg.eigh(torch.eye(q.shape[0], dtype=dtype) - q @ q.T)
        return evecs[:, evals > 0.5]


@attrs.frozen(kw_only=True)
class SolveProblem:
    """What a solver fits, in one unified form (MEMIT, Meng et al. 2023 §4; MEMIT_seq; AlphaEdit,
    Fang et al. 2025 §3, as a ridge fit restricted to a row subspace)::

        min_Δ ‖Δ K − R‖² + tr(Δ B Δᵀ) + α‖Δ‖²   subject to Δ = Δ P (rows in ``subspace``)
        B = λ·C0 (if use_background) + Cp (if use_past)

    ``background_weight`` sets λ (None: the editor's own, e.g. MEMIT's ``mom2_weight``): a constraint that
    keeps C0 inside a restricted solve (BetaEdit's λ1·C0 under the projection) sets it with
    ``use_background=True``. ``ridge`` α is a Frobenius penalty on the batch's increment (AlphaEdit's L2,
    ENCORE's λ_n); constraints that add one add it to what is there.

    ``keys`` ``K`` ``[d_in, u]``, ``residual`` ``R`` ``[d_out, u]``, ``past`` ``Cp``
    ``[d_in, d_in]`` (the sum of keys of earlier batches, kept by the kernel; None before
    the first batch) and ``past_batches``, the earlier batches' keys ``K_b`` ``[d_in, u_b]``
    in order (``Cp = Σ_b K_b K_bᵀ``; the same tensor objects from batch to batch, so a solver
    can update products such as ``Cp·P`` incrementally instead of recomputing them). The
    editor owns ``λ·C0``; ``use_background`` / ``use_past`` say which preservation terms
    enter, ``ridge`` is ``α``, ``subspace`` restricts the rows of Δ. Editors may add their own
    terms (MEMIT_seq always uses ``past``).
    """

    keys: torch.Tensor = attrs.field(eq=False, repr=False)
    residual: torch.Tensor = attrs.field(eq=False, repr=False)
    past: torch.Tensor | None = attrs.field(default=None, eq=False, repr=False)
    past_batches: tuple[torch.Tensor, ...] = attrs.field(default=(), converter=to_tuple, eq=False, repr=False)
    use_background: bool = True
    use_past: bool = False
    ridge: float = 0.0
    subspace: Subspace | None = None
    background_weight: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.keys.ndim != 2 or self.residual.ndim != 2 or self.keys.shape[1] != self.residual.shape[1]:
            raise ValueError(
                f"keys [d_in, u] and residual [d_out, u] must share u; got {tuple(self.keys.shape)} "
                f"and {tuple(self.residual.shape)}"
            )
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if self.background_weight is not None and not self.background_weight >= 0:
            raise ValueError(f"background_weight must be >= 0, got {self.background_weight}")

    def restricted(self, subspace: Subspace, **changes: Any) -> SolveProblem:
        """The same problem with rows of Δ restricted to ``subspace`` (and other field changes)."""
        if self.subspace is not None:
            raise ValueError("the solve is already restricted to a subspace; compose constraints in one subspace")
        return attrs.evolve(self, subspace=subspace, **changes)


@attrs.frozen(kw_only=True)
class DeltaProposal:
    """A solved update ``Δ`` ``[d_out, d_in]`` for ``site`` (math layout)."""

    site: Site
    delta: torch.Tensor = attrs.field(eq=False, repr=False)
    notes: tuple[str, ...] = ()

    def with_delta(self, delta: torch.Tensor, note: str | None = None) -> DeltaProposal:
        if delta.shape != self.delta.shape:
            raise ValueError(f"a constraint changed Δ's shape from {tuple(self.delta.shape)} to {tuple(delta.shape)}")
        notes = (*self.notes, note) if note else self.notes
        return attrs.evolve(self, delta=delta, notes=notes)


@attrs.frozen(kw_only=True)
class AccumulatedProposal:
    """The accumulated perturbation of a site, ``Δ_n = W_n − W0`` ``[d_out, d_in]`` (math layout).

    Sent after every batch (``stage="batch"``) and once when the run finishes (``stage="final"``)
    to constraints that act on the whole edit history (PRUNE). A constraint returning
    ``with_delta(F(Δ_n))`` makes the kernel write ``W0 + F(Δ_n)``. ``initial`` is ``W0``.
    """

    site: Site
    delta: torch.Tensor = attrs.field(eq=False, repr=False)
    initial: torch.Tensor = attrs.field(eq=False, repr=False)
    stage: Literal["batch", "final"] = attrs.field(validator=attrs.validators.in_(("batch", "final")))

    def with_delta(self, delta: torch.Tensor) -> AccumulatedProposal:
        if delta.shape != self.delta.shape:
            raise ValueError(f"a constraint changed Δ_n's shape from {tuple(self.delta.shape)} to {tuple(delta.shape)}")
        return attrs.evolve(self, delta=delta)


def _skipped(value: Any) -> tuple[bool, ...]:
    return tuple(bool(v) for v in value)


@attrs.frozen(kw_only=True)
class TargetProposal:
    """The target values of a batch, offered to the constraints before any residual is formed.

    An editor that optimises target hidden states (MEMIT's v*, Meng et al. 2023 §4.2) returns one from
    ``editkit_compute_targets``; rows follow ``batch.requests``:

    * ``initial`` ``h`` ``[u, d_model]``: the output of ``site``'s block at each request's position (the
      subject's last token of the bare prompt), on the model as it is when the batch starts;
    * ``target`` ``z`` ``[u, d_model]``: what that output should become, ``z = h + δ``;
    * ``values`` ``v0`` ``[u, d_model]``: the output of ``site``'s module (the MLP) at the same positions, so
      that ``v* = v0 + δ`` is the value the MLP is asked to produce (NAS rescales it).

    A constraint returns :meth:`with_target` (a new ``z``, and which requests it withdrew: ``z = h``).
    """

    site: Site
    initial: torch.Tensor = attrs.field(eq=False, repr=False)
    target: torch.Tensor = attrs.field(eq=False, repr=False)
    values: torch.Tensor = attrs.field(eq=False, repr=False)
    skipped: tuple[bool, ...] = attrs.field(default=(), converter=_skipped)
    notes: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        shape = tuple(self.initial.shape)
        if len(shape) != 2 or tuple(self.target.shape) != shape or tuple(self.values.shape) != shape:
            raise ValueError(f"initial, target and values must share one shape [u, d_model]; got {shape}, "
                             f"{tuple(self.target.shape)} and {tuple(self.values.shape)}")
        if self.skipped and len(self.skipped) != shape[0]:
            raise ValueError(f"skipped has {len(self.skipped)} flags for {shape[0]} requests")

    @property
    def shift(self) -> torch.Tensor:
        """``δ = z − h`` ``[u, d_model]``."""
        return self.target - self.initial

    def with_target(self, target: torch.Tensor, skipped: Any = None, note: str | None = None) -> TargetProposal:
        """The same proposal with ``z`` replaced (same shape); ``skipped``: per request, whether it was withdrawn
        (kept from this proposal when None; a request once withdrawn stays so)."""
        if tuple(target.shape) != tuple(self.target.shape):
            raise ValueError(f"a constraint changed z's shape from {tuple(self.target.shape)} to "
                             f"{tuple(target.shape)}")
        before = self.skipped or (False,) * int(self.target.shape[0])
        flags = before if skipped is None else tuple(a or bool(b) for a, b in zip(before, skipped, strict=True))
        notes = (*self.notes, note) if note else self.notes
        return attrs.evolve(self, target=target, skipped=flags, notes=notes)


@attrs.define(kw_only=True)
class UndoRecord:
    """Restores one weight bit-exactly: keeps the exact previous storage values."""

    site: Site
    parameter: torch.nn.Parameter = attrs.field(eq=False, repr=False)
    previous: torch.Tensor = attrs.field(eq=False, repr=False)

    def undo(self) -> None:
        with torch.no_grad():
            self.parameter.copy_(self.previous)


Proposal = TargetProposal | SolveProblem | DeltaProposal | AccumulatedProposal
"""What ``editkit_constrain_update`` receives and returns (one of the four kinds, the same kind back)."""
