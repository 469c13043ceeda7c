"""Fine-tuning (FT / FT-L) hyperparameters and the published FT-L presets (Zhu et al. 2020, FT-L, arXiv 2012.00363)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

_positive: Callable[..., Any] = attrs.validators.gt(0)
_non_negative: Callable[..., Any] = attrs.validators.ge(0)


@attrs.frozen(kw_only=True)
class FtHParams:
    """Hyperparameters of the ``ft`` editor.

    ``layers``: the MLP output matrices fine-tuned, one after another in ascending order (None: MEMIT's
    generic choice; FT-L's published setting is layer 0). ``steps``: epochs over the batch's requests,
    ``chunk`` requests per Adam step (0: the whole batch), learning rate ``lr``; a step is skipped when its
    loss is below ``early_stop_loss`` and the epochs stop when their mean loss is.

    ``objective``: ``prompt_last`` (FT-L, ROME's baseline code: every target token's log-prob is read at
    the prompt's last token) or ``target_new`` (teacher-forced NLL of the target tokens, EasyEdit's FT-M
    objective). ``linf``: FT-L's L∞ bound ε on the weight change, enforced after every step (0: plain
    FT); ``box``: around the weights at the batch's start (``batch``, the reference code, which clamps
    around the weights each call starts from) or around the unedited weights (``initial``).

    With a row subspace from a constraint (``--constraint nullspace``) the gradient is projected onto it
    before each step and the update after it, so the update keeps ``ΔP = Δ`` exactly; the box and the subspace are then
    alternated ``box_iters`` times per step (Dykstra's algorithm, ending with the projection): 1 = clamp,
    then project, so the box holds only approximately — each batch notes by how much (``ft.box``).
    """

    layers: tuple[int, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    lr: float = attrs.field(default=5e-4, validator=_positive)
    steps: int = attrs.field(default=25, validator=_positive)
    chunk: int = attrs.field(default=0, validator=_non_negative)
    objective: str = attrs.field(default="prompt_last", validator=attrs.validators.in_(("prompt_last", "target_new")))
    linf: float = attrs.field(default=5e-4, validator=_non_negative)
    box: str = attrs.field(default="batch", validator=attrs.validators.in_(("batch", "initial")))
    box_iters: int = attrs.field(default=1, validator=_positive)
    early_stop_loss: float = attrs.field(default=1e-2, validator=_non_negative)


PRESETS: dict[str, dict[str, Any]] = {
    # kmeng01/rome hparams/FT/*_constr.json (FT-L)
    "gpt2-xl": {"layers": (0,), "lr": 5e-4, "steps": 25, "linf": 5e-4, "objective": "prompt_last"},
    "gpt-j": {"layers": (0,), "lr": 5e-4, "steps": 25, "linf": 5e-5, "objective": "prompt_last"},
}
