"""Hyperparameters: attrs classes owned by editors and constraints, filled from presets and
``--set KEY=VALUE`` overrides (validated; unknown keys rejected with the valid ones listed).

A key is either bare (``v_lr=0.5``: the one method that has it) or qualified with the
method's name (``nullspace.threshold=1e-2``). A float field takes finite numbers only (``inf``, ``-inf``
and ``nan`` are refused naming the key); a value a field's validator refuses is one line naming
``method.field`` (an attrs ``in_`` validator: the values it takes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.errors import UsageError


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "m.b=x"]`` → ``{"a": "1", "m.b": "x"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _convert(owner: str, field: attrs.Attribute, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[union-attr]
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true/false")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return _finite(float(text))
        if isinstance(default, tuple) or (default is None and "tuple" in str(field.type)):
            return parse_int_list(text) if text else ()
        if default is None and "float" in str(field.type):
            return None if text.lower() == "none" else _finite(float(text))
        if default is None and "int" in str(field.type):
            return None if text.lower() == "none" else int(text)
    except ValueError as exc:
        raise UsageError(f"{owner}.{field.name}: cannot use {raw!r} ({exc})") from None
    return text


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"1,2"``, ``"3-5"`` or ``"1,3-4"`` → ``(1, 2)``, ``(3, 4, 5)``, ``(1, 3, 4)``."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return tuple(out)


def build(owner: str, cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate ``cls`` with ``values`` converted from strings where needed."""
    fields = {f.name: f for f in attrs.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UsageError(f"{owner}: unknown hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    kwargs = {name: _convert(owner, fields[name], raw) for name, raw in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(_refusal(owner, exc)) from None


def _refusal(owner: str, exc: BaseException) -> str:
    """One line for a value a hparams class refused. attrs' own validators raise with
    ``(message, Attribute, expected, value)`` as arguments, whose ``str`` is a tuple with the attribute's repr:
    those become ``owner.field: expected ..., got VALUE``; a plugin's own message is kept as it is."""
    args = exc.args
    if len(args) >= 2 and isinstance(args[1], attrs.Attribute):
        name = f"{owner}.{args[1].name}"
        if len(args) >= 4:
            expected, value = args[2], args[3]
            if isinstance(exc, ValueError) and isinstance(expected, tuple | list | set | frozenset | dict):
                shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in expected)
                return f"{name}: expected one of {shown}, got {value!r}"
            if isinstance(expected, type):
                return f"{name}: expected {expected.__name__}, got {value!r}"
        message = str(args[0]) if args else type(exc).__name__
        return f"{name}: {message}"
    message = " ".join(str(a) for a in args) if args else type(exc).__name__
    return f"{owner}: invalid hyperparameters: {message}"


def _holders(key: str, owners: Sequence[tuple[str, type]]) -> tuple[str | None, str, list[int]]:
    """``(owner named in key or None, field, indices of the owners that hold it)`` for ``[owner.]field``."""
    owner, _, field = key.partition(".") if "." in key else (None, "", key)
    holders = [i for i, (o, cls) in enumerate(owners)
               if (owner is None or o == owner) and field in {f.name for f in attrs.fields(cls)}]
    return owner, field, holders


def holder(key: str, owners: Sequence[tuple[str, type]]) -> int | None:
    """The index in ``owners`` of the one owner that holds ``[owner.]field`` ``key`` (None: none or several)."""
    holders = _holders(key, owners)[2]
    return holders[0] if len(holders) == 1 else None


def split_overrides(overrides: Mapping[str, str], owners: Sequence[tuple[str, type]]) -> list[dict[str, str]]:
    """Assign each ``--set`` key to one owner; ``owners`` are (name, hparams class) pairs, in order.

    An editor and a constraint may share a name (the ``rect`` editor implies the ``rect`` constraint):
    ``NAME.field`` then goes to the one of them that has ``field``.
    """
    names = [name for name, _ in owners]
    by_index: list[dict[str, str]] = [{} for _ in owners]
    for key, value in overrides.items():
        owner, field, holders = _holders(key, owners)
        if owner is not None and owner not in names:
            raise UsageError(f"--set {key}: no method named {owner!r} in this run ({', '.join(dict.fromkeys(names))})")
        if not holders:
            valid = sorted({f"{o}.{f.name}" for o, cls in owners for f in attrs.fields(cls)})
            raise UsageError(f"--set {key}: unknown hyperparameter; valid: {', '.join(valid)}")
        if len(holders) > 1:
            raise UsageError(
                f"--set {key}: ambiguous, held by {', '.join(names[i] for i in holders)}; qualify it, "
                f"e.g. {names[holders[0]]}.{field}"
            )
        by_index[holders[0]][field] = value
    return by_index


def applicable(defaults: Mapping[str, str], owners: Sequence[tuple[str, type]]) -> dict[str, str]:
    """The ``defaults`` (``--set`` form) that exactly one owner of this run holds; the rest are
    dropped silently (a default calibrated for a method that does not run)."""
    return {key: value for key, value in defaults.items() if len(_holders(key, owners)[2]) == 1}


def to_json(hparams: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(hparams).items()}
