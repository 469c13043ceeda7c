"""EMMET hyperparameters: MEMIT's (keys, v*, layer spreading) plus the equality solve's (EMMET,
Gupta et al. 2024, arXiv 2403.14236)."""

from __future__ import annotations

from typing import Any

import attrs
from editkit_memit.hparams import MemitHParams


@attrs.frozen(kw_only=True)
class EmmetHParams(MemitHParams):
    """MEMIT's fields (:class:`~editkit_memit.hparams.MemitHParams`: layers, v*, ``sequential`` for Cp)
    and:

    ``mom2_weight``: λ in ``C = λ·C0`` (default 1, the published GPT-J / Llama-2 setting). With
    ``emmet_lambda`` 0 it cancels; with ``emmet_lambda`` > 0 it sets how strong that ridge is
    (``λ_E`` against ``K_Eᵀ(λC0)⁻¹K_E``). ``emmet_lambda``: λ_E, the ridge on the u×u system for
    batches of more than one request (0.1 as the reference; 0 = the constraints hold exactly).
    ``rcond``: keys whose smallest singular value (in the solve's subspace) is below ``rcond`` times
    their largest count as linearly dependent — warned, and solved as
    :mod:`editkit_emmet.equality` says.
    """

    mom2_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    emmet_lambda: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    rcond: float = attrs.field(default=1e-6, validator=[attrs.validators.gt(0), attrs.validators.lt(1)])


PRESETS: dict[str, dict[str, Any]] = {
    # unified-model-editing hparams/EMMET/*.json
    "gpt2-xl": {"layers": (17,), "v_lr": 0.5, "v_steps": 20, "v_weight_decay": 0.5, "clamp_norm": 0.75,
                "kl_factor": 0.0625, "mom2_weight": 1000.0, "emmet_lambda": 0.1},
    "gpt-j": {"layers": (5,), "v_lr": 0.5, "v_steps": 25, "v_weight_decay": 0.5, "clamp_norm": 0.75,
              "kl_factor": 0.0625, "mom2_weight": 1.0, "emmet_lambda": 0.1},
    "llama2-7b": {"layers": (5,), "v_lr": 0.5, "v_steps": 25, "v_weight_decay": 1e-3, "clamp_norm": 4.0,
                  "kl_factor": 0.0625, "mom2_weight": 1.0, "emmet_lambda": 0.1},
}
