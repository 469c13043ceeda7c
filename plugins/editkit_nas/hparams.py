"""NAS hyperparameters: the authors' constants (``util/vstar_stats.py``, ``NAS/compute_z.py``) as defaults."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


def _share(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name}: expected a share in [0, 1), got {value!r}")


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0 (or unset), got {value!r}")


@attrs.frozen(kw_only=True)
class NasHParams:
    """``factor``: an edit whose ``‖v*‖ > factor·n̄`` is withdrawn (2 in NAS's MEMIT-family ``compute_z``; 5 in
    its ROME variant). ``norm``: give ``n̄`` directly; otherwise it is measured once per model and editor setting
    on the unedited model and stored beside the key statistics (``<stats store>/nas/``): the mean of ``‖v0 + δ‖`` over
    ``anchor_samples`` rewrites drawn (``random.Random(seed).sample``) from ``anchor_data`` (a CounterFact file,
    record or EasyEdit form), the largest ``trim`` share dropped. ``anchor_batch``: rewrites optimised together.
    """

    factor: float = attrs.field(default=2.0, validator=_positive)
    norm: float | None = attrs.field(default=None, validator=_optional_positive)
    anchor_data: str | None = None
    anchor_samples: int = attrs.field(default=1000, validator=_positive)
    seed: int = 0
    trim: float = attrs.field(default=0.05, validator=_share)
    anchor_batch: int = attrs.field(default=100, validator=_positive)
