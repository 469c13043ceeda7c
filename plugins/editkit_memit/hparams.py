"""MEMIT hyperparameters, generic defaults and the published presets (kmeng01/memit and AlphaEdit hparams/*.json)."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name}: expected >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class MemitHParams:
    """Hyperparameters of the MEMIT editor.

    ``layers``: edited layers (None: a generic choice from the model depth, see
    :func:`default_layers`). v* optimisation: ``v_steps`` Adam steps of rate ``v_lr``, stop
    when the loss < ``early_stop_loss``; loss = NLL + ``kl_factor``·KL + ``v_weight_decay``·‖δ‖/‖h‖²;
    ‖δ‖ clamped to ``clamp_norm``·‖h‖. Solve: ``mom2_weight`` is λ in λ·C0; ``sequential``
    adds Cp (MEMIT_seq). ``vstar_batch``: requests optimised together (0 = the whole batch,
    1 = one at a time as the reference code). ``vstar_forward``: ``full`` runs the whole model each
    step; ``upper`` only the blocks after the last edited one (error if the family's head cannot
    be reproduced); ``suffix`` the whole model on the columns from the subject on, with the
    prefix's keys and values cached (error if the family's cache cannot reproduce the model);
    ``auto`` (default) suffix, else upper, else full — whichever reproduces the model first.
    ``prefix_len``: tokens per generated prefix. ``fused_activations``: run the key collection
    and the v* steps with fused equivalents of unfused activation modules
    (:mod:`editkit.helpers.activations`; the same function up to float rounding). ``vstar_autocast``:
    ``bfloat16`` runs the blocks of each v* step under ``torch.autocast`` (faster on CPUs with
    AVX512-BF16 or AMX and on GPUs; z moves by ~1e-2 relative, so off by default: ``none``).
    """

    layers: tuple[int, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    v_lr: float = attrs.field(default=0.5, validator=_positive)
    v_steps: int = attrs.field(default=20, validator=_positive)
    v_weight_decay: float = attrs.field(default=0.5, validator=_non_negative)
    clamp_norm: float = attrs.field(default=0.75, validator=_positive)
    kl_factor: float = attrs.field(default=0.0625, validator=_non_negative)
    early_stop_loss: float = attrs.field(default=5e-2, validator=_non_negative)
    mom2_weight: float = attrs.field(default=15000.0, validator=_non_negative)
    sequential: bool = False
    vstar_batch: int = attrs.field(default=0, validator=_non_negative)
    vstar_forward: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "suffix", "upper", "full"))
    )
    prefix_len: int = attrs.field(default=10, validator=_positive)
    fused_activations: bool = True
    vstar_autocast: str = attrs.field(default="none", validator=attrs.validators.in_(("none", "bfloat16")))


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-xl": {"layers": (13, 14, 15, 16, 17), "v_lr": 0.5, "v_steps": 20, "mom2_weight": 20000.0},
    "gpt-j": {"layers": (3, 4, 5, 6, 7, 8), "v_lr": 0.5, "v_steps": 25, "mom2_weight": 15000.0},
    "llama3-8b": {"layers": (4, 5, 6, 7, 8), "v_lr": 0.1, "v_steps": 25, "mom2_weight": 15000.0},
}


def default_layers(n_layers: int) -> tuple[int, ...]:
    """A generic choice: up to 5 consecutive layers ending near 35% of the depth.

    GPT-2 XL (48) → 13..17 as published; a 6-layer model → 1, 2 (blocks 3..5 then carry
    the subject to the prediction); 2 layers → 0.
    """
    last = max(0, min(n_layers - 2, round(0.35 * n_layers))) if n_layers > 1 else 0
    count = max(1, min(5, n_layers // 3))
    return tuple(range(max(0, last - count + 1), last + 1))
