"""A located edit site: one weight matrix the run edits, and how it is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def _non_negative(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name}: expected a non-negative int, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name}: expected a positive int, got {value!r}")


@attrs.frozen(kw_only=True)
class Site:
    """The MLP output projection of one layer.

    ``module`` is the dotted module name (``transformer.h.3.mlp.c_proj``); ``block`` the name
    of the decoder block whose output is the residual stream ``h^layer``. In math layout the
    weight is ``W`` ``[d_out, d_in]`` with ``v = W k``; ``transposed`` is true when the module
    stores ``Wᵀ`` (``[d_in, d_out]``, GPT-2's ``Conv1D``). :meth:`to_math` and :meth:`to_storage`
    convert between the two layouts; they are the only places that know which one the module uses.
    """

    layer: int = attrs.field(validator=_non_negative)
    module: str = attrs.field(validator=attrs.validators.instance_of(str))
    block: str = attrs.field(validator=attrs.validators.instance_of(str))
    d_in: int = attrs.field(validator=_positive)
    d_out: int = attrs.field(validator=_positive)
    transposed: bool = attrs.field(validator=attrs.validators.instance_of(bool))

    @property
    def weight_name(self) -> str:
        return f"{self.module}.weight"

    @property
    def storage_shape(self) -> tuple[int, int]:
        return (self.d_in, self.d_out) if self.transposed else (self.d_out, self.d_in)

    def to_math(self, stored: torch.Tensor) -> torch.Tensor:
        """A weight (or a difference of weights) as the module stores it → math layout ``[d_out, d_in]``.

        Returns a view (``stored.T`` for a transposed module, ``stored`` itself otherwise): no copy, no
        dtype or device change.
        """
        return stored.T if self.transposed else stored

    def to_storage(self, math: torch.Tensor) -> torch.Tensor:
        """A matrix in math layout ``[d_out, d_in]`` → the module's storage layout (:attr:`storage_shape`).

        The inverse of :meth:`to_math`, a view as well: ``site.to_storage(site.to_math(w))`` equals ``w``.
        """
        return math.T if self.transposed else math
