"""ENCORE hyperparameters: MEMIT's, sequential, with MPES and the increment penalty (the authors'
``hparams/ENCORE/*.json``)."""

from __future__ import annotations

from typing import Any

import attrs
from editkit_memit.hparams import MemitHParams


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name}: expected >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class EncoreHParams(MemitHParams):
    """MEMIT's hyperparameters (``mom2_weight`` is λ_p), ``sequential`` on (Cp in every solve), and:
    ``mpes_steps``: v* of a request stops on the n-th step at which the new object is the argmax at every target
    position of every rewrite prompt (the authors' ``prob_cutoff = −n``; 0 turns MPES off);
    ``increment_penalty``: λ_n, the Frobenius penalty ``λ_n‖Δ‖²`` on each batch's increment. Generic defaults:
    the authors' Llama-3-8B values."""

    sequential: bool = True
    mpes_steps: int = attrs.field(default=2, validator=_non_negative)
    increment_penalty: float = attrs.field(default=20.0, validator=_non_negative)


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-xl": {"layers": (13, 14, 15, 16, 17), "v_lr": 0.5, "v_steps": 20, "mom2_weight": 20000.0,
                "increment_penalty": 10.0, "mpes_steps": 4},
    "llama2-7b": {"layers": (4, 5, 6, 7, 8), "v_lr": 0.5, "v_steps": 25, "mom2_weight": 15000.0,
                  "increment_penalty": 10.0, "mpes_steps": 3},
    "llama3-8b": {"layers": (4, 5, 6, 7, 8), "v_lr": 0.5, "v_steps": 25, "mom2_weight": 15000.0,
                  "increment_penalty": 20.0, "mpes_steps": 2},
}
