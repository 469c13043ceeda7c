"""LyapLock hyperparameters: MEMIT's (``mom2_weight`` is λ, 1000 in the authors' json) and the queue's."""

from __future__ import annotations

from typing import Any

import attrs
from editkit_memit.hparams import MemitHParams


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class LyapLockHParams(MemitHParams):
    """``alpha``: the budget ``α`` of the preservation loss in units of ``D`` (its value after the first batch;
    60); ``value_weight``: ``V``, the weight of the new and earlier edits' values (1); ``drift``: ``b`` (0).
    ``mom2_weight`` is λ (1000, the authors' ``mom2_update_weight``)."""

    mom2_weight: float = attrs.field(default=1000.0, validator=_positive)
    alpha: float = attrs.field(default=60.0, validator=_positive)
    value_weight: float = attrs.field(default=1.0, validator=_positive)
    drift: float = 0.0


# GPT-2's c_proj and GPT-J's fc_out have a bias; editkit's PL(W) = tr((W − W0)C0(W − W0)ᵀ) leaves it out (it does not
# change with W), while the authors' output moments include it: D, the budget αD and the queue differ there.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-xl": {"layers": (13, 14, 15, 16, 17), "v_lr": 0.5, "v_steps": 20, "mom2_weight": 1000.0},
    "gpt-j": {"layers": (3, 4, 5, 6, 7), "v_lr": 0.5, "v_steps": 25, "mom2_weight": 1000.0},
    "llama3-8b": {"layers": (4, 5, 6, 7, 8), "v_lr": 0.1, "v_steps": 25, "mom2_weight": 1000.0},
}
