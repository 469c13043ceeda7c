"""The run configuration: what a user chose on the command line, validated, frozen."""

from __future__ import annotations

from typing import Any

import attrs


def _name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name}: expected a non-empty name, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name}: expected a positive int, got {value!r}")


def _layers(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not value or any(not isinstance(v, int) or v < 0 for v in value):
        raise ValueError(f"{attribute.name}: expected non-negative layer indices, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name}: duplicate layer in {value!r}")


@attrs.frozen(kw_only=True)
class RunConfig:
    """One edit run.

    ``constraints`` keep the user's order; ``overrides`` are the ``--set`` assignments;
    ``constrain_mode`` says where delta-transforming constraints act: ``inline`` (before
    each layer is written, later layers compensate) or ``posthoc`` (after all layers of a
    batch; the published baselines' behaviour). ``defaults`` are hyperparameter values
    calibrated for the model at hand (a dataset's own model ships them), in ``--set`` form;
    each applies only where a method of the run has that hyperparameter, and anything the user
    chose (``--preset``, ``--layers``, ``--set``) takes precedence.
    """

    editor: str = attrs.field(default="memit", validator=_name)
    constraints: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    layers: tuple[int, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple), validator=_layers
    )
    batch_size: int = attrs.field(default=100, validator=_positive)
    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    device: str = attrs.field(default="cpu", validator=_name)
    preset: str | None = None
    overrides: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=lambda v: tuple(sorted(dict(v).items())))
    constrain_mode: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(("inline", "posthoc")))
    )
    defaults: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=lambda v: tuple(sorted(dict(v).items())))

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["constraints"] = list(self.constraints)
        out["layers"] = list(self.layers) if self.layers is not None else None
        out["overrides"] = dict(self.overrides)
        out["defaults"] = dict(self.defaults)
        return out
