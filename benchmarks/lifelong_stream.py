"""The lifelong editing stream: counterfact-edit.json then counterfact-train.json in CounterFact's record form,
de-duplicated by case id, without the calibration's held-out cases (the case ids of counterfact_portability_gpt4.json's
records 931-1030) and without any case of the held-out counterfact-val.json; the first ``--edits`` records.

    python benchmarks/lifelong_stream.py --data ../shared/data/real --edits 2000 --out runs/stream-2000.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from editkit_datasets.formats import from_easyedit

from editkit.helpers.atomic import write_json_atomic
from editkit.requests import requests_from_records


def stream(data: Path) -> list[dict]:
    """Every usable record, in stream order."""
    held_out = {r["case_id"] for r in json.loads((data / "counterfact_portability_gpt4.json").read_text())[931:]}
    held_out |= {r["case_id"] for r in json.loads((data / "counterfact-val.json").read_text())}
    seen: set = set()
    records = []
    for name in ("counterfact-edit.json", "counterfact-train.json"):
        for record in json.loads((data / name).read_text()):
            case = record["case_id"]
            if case in held_out or case in seen:
                continue
            seen.add(case)
            records.append(from_easyedit(record, len(records)))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/real"))
    parser.add_argument("--edits", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    records = stream(args.data)
    if args.edits > len(records):
        print(f"--edits {args.edits}: the stream has only {len(records)} records", file=sys.stderr)
        return 2
    records = records[: args.edits]
    requests_from_records(records, source=str(args.out))  # every record parses as `editkit run --requests` reads it
    write_json_atomic(args.out, records)
    print(f"{len(records)} CounterFact records -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
