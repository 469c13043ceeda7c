"""Numbers for people: 3 significant figures, with units (seconds, bytes, counts)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["mebibytes", "number", "seconds", "signed", "value"]


def number(x: float | int | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures: 0.0123, 12.3, 2510; 1.23e+06 or 1.23e-04 beyond; '–' for None/NaN;
    negative numbers with a minus sign (−)."""
    text = _number(x, digits)
    return "−" + text[1:] if text.startswith("-") else text


def _number(x: float | int | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) and abs(x) < 10**6:
        return f"{x:d}"
    if x == 0:
        return "0"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    magnitude = abs(x)
    if 10 ** (digits - 1) <= magnitude < 1e6:  # 2510, 123000: rounded to `digits` significant figures
        return f"{round(x, digits - 1 - math.floor(math.log10(magnitude))):.0f}"
    if 1e-3 <= magnitude < 10 ** (digits - 1):  # 0.00123, 1.20, 12.3
        return f"{x:#.{digits}g}".rstrip(".")
    return f"{x:.{digits - 1}e}"


def signed(x: float | None, digits: int = 3) -> str:
    """A difference: '+1.23', '−0.5', '0'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    text = number(abs(x), digits)
    return ("+" if x > 0 else "−") + text


def seconds(s: float | None) -> str:
    """A duration: 850 ms, 12.3 s, 4.5 min, 1.25 h."""
    if s is None:
        return "–"
    if s < 1:
        return f"{number(s * 1000)} ms"
    if s < 120:
        return f"{number(s)} s"
    if s < 7200:
        return f"{number(s / 60)} min"
    return f"{number(s / 3600)} h"


def mebibytes(mib: float | None) -> str:
    """A size given in MiB: 512 MiB, 1.25 GiB."""
    if mib is None:
        return "–"
    if mib >= 1024:
        return f"{number(mib / 1024)} GiB"
    return f"{number(mib)} MiB"


def value(x: Any) -> str:
    """Any JSON value of a configuration: numbers as :func:`number`, lists joined, None as '–'."""
    if isinstance(x, bool) or x is None:
        return number(x) if x is not None else "–"
    if isinstance(x, (int, float)):
        return number(x)
    if isinstance(x, (list, tuple)):
        return ", ".join(value(v) for v in x) if x else "[]"
    if isinstance(x, dict):
        return ", ".join(f"{k}={value(v)}" for k, v in x.items()) if x else "{}"
    return str(x)
