"""ROME hyperparameters and the published presets (Meng et al. 2022, ROME, §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

_positive: Callable[..., Any] = attrs.validators.gt(0)
_non_negative: Callable[..., Any] = attrs.validators.ge(0)


def _one_layer(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...] | None) -> None:
    if value is not None and len(value) != 1:
        raise ValueError(f"{attribute.name}: ROME edits exactly one layer (one rank-one update per request), "
                         f"got {list(value)}; give one, e.g. --layers {value[-1] if value else 17}")


@attrs.frozen(kw_only=True)
class RomeHParams:
    """Hyperparameters of the ROME editor.

    ``layers``: the one edited layer (None: the last of MEMIT's generic choice, which is the
    published 17 on GPT-2 XL). v*: ``v_steps`` Adam steps of rate ``v_lr`` on δ added at the
    subject's last token of the layer's output (= its MLP output, so ``v* = m_init + δ``), stop when
    the loss < ``early_stop_loss``; loss = NLL + ``kl_factor``·KL + ``v_weight_decay``·‖δ‖/‖m_init‖²;
    ‖δ‖ ≤ ``clamp_norm_factor``·‖m_init‖ (``m_init``: the MLP output at the bare prompt, as rome/compute_v.py).
    The clamp keeps the reference's name, not MEMIT's ``clamp_norm``: it is relative to another norm
    (‖m‖, not ‖h‖), so settings calibrated for MEMIT's v* (the demo world's ``clamp_norm=2``) must not
    reach it. ``v_lr``, ``v_steps`` and ``kl_factor`` mean what they mean for MEMIT and are shared.

    ``constraint_key``: ``average`` (default; the paper's Eq. 2 and r-ROME: the prefix-averaged key
    ``k*`` in the direction *and* the constraint ``Δ k* = v* − W k*``) or ``bare`` (the original code:
    direction ``C0⁻¹k*``, constraint met at the bare prompt's key, ``Δ k_b = v* − W k_b``).
    ``refresh_targets``: a batch of N requests is N sequential rank-one edits; with true (default, as
    the reference) each request's v* is optimised on the model with the batch's earlier edits applied;
    with false every request keeps the v* of the batch's start (about half the v* time: with true the
    batch-start v* of requests 2..N are computed too, as the residual the hook contract asks for, and then
    replaced; the earlier edits are still subtracted from each residual). ``mom2_weight``: λ on C0 — it
    cancels in the rank-one form and matters only against Cp or a ridge that a constraint adds.
    ``rcond``: a key whose component in the solve's subspace is below ``rcond``·‖k‖ gets no update
    (warned). ``vstar_forward``, ``prefix_len``, ``fused_activations``: as MEMIT's (the same v* and
    prefix machinery).
    """

    layers: tuple[int, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple),
                                                 validator=_one_layer)
    v_lr: float = attrs.field(default=0.5, validator=_positive)
    v_steps: int = attrs.field(default=20, validator=_positive)
    v_weight_decay: float = attrs.field(default=0.5, validator=_non_negative)
    clamp_norm_factor: float = attrs.field(default=4.0, validator=_positive)
    kl_factor: float = attrs.field(default=0.0625, validator=_non_negative)
    early_stop_loss: float = attrs.field(default=5e-2, validator=_non_negative)
    constraint_key: str = attrs.field(default="average", validator=attrs.validators.in_(("average", "bare")))
    refresh_targets: bool = True
    mom2_weight: float = attrs.field(default=1.0, validator=_positive)
    rcond: float = attrs.field(default=1e-6, validator=[_positive, attrs.validators.lt(1)])
    vstar_forward: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "suffix", "upper", "full"))
    )
    prefix_len: int = attrs.field(default=10, validator=_positive)
    fused_activations: bool = True


PRESETS: dict[str, dict[str, Any]] = {
    # kmeng01/rome hparams/ROME/gpt2-xl.json, EleutherAI_gpt-j-6B.json
    "gpt2-xl": {"layers": (17,), "v_lr": 0.5, "v_steps": 20, "v_weight_decay": 0.5, "clamp_norm_factor": 4.0,
                "kl_factor": 0.0625},
    "gpt-j": {"layers": (5,), "v_lr": 0.5, "v_steps": 20, "v_weight_decay": 0.5, "clamp_norm_factor": 4.0,
              "kl_factor": 0.0625},
}
