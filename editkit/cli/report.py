"""``editkit report``: one self-contained HTML page comparing finished runs (and ``--json``, its data)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("report.html")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="compare finished runs on one HTML page",
        description="Write one self-contained HTML page (opens offline: figures inline, nothing loaded from the "
                    "network) with the runs side by side: configuration and versions, metrics before and after, "
                    "curves against the number of edits (--eval-every), per-layer C0 spectra and kept key energy, "
                    "per-batch update norms, v* losses and invariant checks, stage timings and peak memory. "
                    "What a run did not record is stated on the page.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="a run's --out directory (holds result.json)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the HTML file to write (default {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true",
                   help="also write the data behind every table and figure as JSON, beside --out (report.json)")
    return p


def main(args: argparse.Namespace) -> int:
    from editkit.errors import UsageError
    from editkit.report import check_outputs, write_report

    out = Path(args.out)
    json_out = out.with_suffix(".json") if args.json else None
    check_outputs(args.runs, out, json_out)  # first: never write over what a run owns, its own result.json above all
    if json_out is not None and json_out == out:
        raise UsageError(f"--out {out} ends in .json: give the HTML file (e.g. report.html); --json writes {out}")
    for path in (out, json_out):
        if path is not None and path.is_dir():
            raise UsageError(f"{path} is a directory; --out names the HTML file to write (e.g. report.html)")
    write_report(args.runs, out, json_out)
    print(f"wrote {out}" + (f" and {json_out}" if json_out else "") + f" ({len(args.runs)} run"
          f"{'s' if len(args.runs) != 1 else ''})")
    return 0


def report_run(out_dir: Path) -> Path:
    """``editkit run --report``: the run's own page, ``OUT/report.html``."""
    from editkit.report import write_report

    path = write_report([out_dir], Path(out_dir) / "report.html")
    print(f"wrote {path}")
    return path
