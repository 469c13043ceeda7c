"""The run configuration: what a user chose on the command line, validated, frozen."""

from __future__ import annotations

import re
from typing import Any

import attrs

from editkit.converters import to_tuple
from editkit.errors import UsageError


def _name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name}: expected a non-empty name, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name}: expected a positive int, got {value!r}")


def layer_problem(value: Any) -> str | None:
    """What is wrong with a layer list (indices from 0, each once), None when nothing is: the one check of the
    layers a job and a run configuration are given (their range is the model's, checked once it is loaded)."""
    if value is None:
        return None
    if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
        return f"expected non-negative layer indices, got {list(value)!r}"
    if len(set(value)) != len(value):
        return f"a layer is given twice in {list(value)!r}"
    return None


def _layers(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    problem = layer_problem(value)
    if problem is not None:
        raise ValueError(f"{attribute.name}: {problem}")


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
    constraints: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    layers: tuple[int, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(to_tuple), validator=_layers
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


_LAYER_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_layers(text: str, option: str = "--layers") -> tuple[int, ...]:
    """``"1,2"``, ``"13-17"`` or ``"1,3-4"`` → layer indices in the order given.

    Raises :class:`UsageError` naming ``option`` for anything else: an empty list (omit the option
    for the editor's default layers), a negative index, an empty or reversed range, a layer given twice.
    Whether the model has these layers is checked once it is loaded.
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise UsageError(f"{option} {text!r}: no layer given (omit {option} for the editor's default layers)")
    layers: list[int] = []
    for item in items:
        match = _LAYER_ITEM.match(item)
        if match is None:
            hint = " (layers count from 0)" if item.startswith("-") else ""
            raise UsageError(f"{option} {text!r}: {item!r} is not a layer index or range; expected e.g. 1,2 "
                             f"or 13-17{hint}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"{option} {text!r}: the range {item!r} is empty; write {hi}-{lo}")
        for layer in range(lo, hi + 1):
            if layer in layers:
                raise UsageError(f"{option} {text!r}: layer {layer} is given twice")
            layers.append(layer)
    return tuple(layers)
