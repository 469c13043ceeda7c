"""Reading a dataset file: JSON list or JSON Lines, each record mapped by its detected format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editkit.api import InputError
from editkit_datasets.formats import CONVERTERS, detect


def _raw(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: neither a JSON list nor JSON Lines ({exc})") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of records, got {type(data).__name__}")
    return data


def read_records(path: Path, **options: Any) -> list[dict[str, Any]]:
    """Records in editkit's CounterFact form. A record that cannot be mapped is kept as an
    ``{"_invalid": message, "case_id": ...}`` marker so that validation names all of them."""
    out = []
    for index, record in enumerate(_raw(path)):
        try:
            if not isinstance(record, dict):
                raise ValueError(f"record: expected a JSON object, got {type(record).__name__}")
            kind = detect(record)
            convert = CONVERTERS[kind]
            out.append(convert(record, index, **options) if kind == "zsre" else convert(record, index))
        except ValueError as exc:
            case = record.get("case_id", index) if isinstance(record, dict) else index
            out.append({"case_id": case, "_invalid": str(exc)})
    return out
