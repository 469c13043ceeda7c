"""The report as one self-contained HTML page: tables, inline SVG figures, and what is missing, in words.

Nothing is loaded from elsewhere: no script, no font, no stylesheet link; each figure is an ``<img>``
whose source is its SVG as a ``data:`` URI (so the figures' SVG ids cannot clash).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from editkit.report import figures
from editkit.report import format as fmt

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 16px 20px 40px; color: #1d1d1f; background: #fff; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
       border-bottom: 1px solid #ddd; padding-bottom: 0.2em; } h3 { font-size: 1em; margin-top: 1.2em; }
.sub { color: #555; font-size: 0.9em; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.35em;
          vertical-align: -0.05em; }
figure { margin: 0.6em 0 1.2em; } figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #444; margin-top: 0.3em; max-width: 900px; }
.missing { color: #8a5a00; background: #fff8e6; border-left: 3px solid #e0a800; padding: 3px 8px;
           font-size: 0.85em; margin: 0.3em 0; }
.pass { color: #1e7b34; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.diff { color: #555; } details { margin: 0.3em 0 1em; font-size: 0.9em; } code { font-size: 0.9em; }
"""


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{escape(colour)}"></span>'


def _missing(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    return "".join(f'<p class="missing">{_swatch(colours.get(label, "#999"))}<b>{escape(label)}</b>: '
                   f"{escape(reason)}</p>" for label, reason in section.get("missing", {}).items())


def _figure(svg: str | None, alt: str, caption: str) -> str:
    if svg is None:
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def batches_and_sizes(run: Mapping[str, Any]) -> str:
    """The batches a run edited and how many requests each held: "1 × 20", "3 × 100"; unequal ones
    honestly, "3 batches: 100, 100, 20" (long runs grouped: "51 batches: 50 × 100, 20")."""
    sizes = run.get("batch_sizes")
    if not sizes:  # not recorded, not derivable: the configured size, said to be that
        return (f"{fmt.value(run.get('batches'))} × {fmt.value(run.get('batch_size'))}"
                + (" (configured batch size)" if run.get("batch_size") is not None else ""))
    if len(set(sizes)) == 1:
        return f"{len(sizes)} × {sizes[0]}"
    if len(sizes) <= 6:
        return f"{len(sizes)} batches: " + ", ".join(map(str, sizes))
    groups: list[list[int]] = []  # [size, how many in a row]
    for size in sizes:
        if groups and groups[-1][0] == size:
            groups[-1][1] += 1
        else:
            groups.append([size, 1])
    return f"{len(sizes)} batches: " + ", ".join(f"{n} × {size}" if n > 1 else str(size) for size, n in groups)


def _runs_table(runs: Sequence[Mapping[str, Any]], colours: Mapping[str, str]) -> str:
    def times(run: Mapping[str, Any]) -> str:
        evals = run["eval_seconds"]
        parts = [f"editing {fmt.seconds(run['edit_seconds'])}"]
        parts += [f"evaluation {phase} {fmt.seconds(s)}" for phase, s in evals.items() if s]
        return "; ".join(parts)

    def resumed(run: Mapping[str, Any]) -> str:
        replayed = run["replayed_batches"]
        if not replayed:
            return "no"
        span = f"{replayed[0]}–{replayed[-1]}" if len(replayed) > 1 else str(replayed[0])
        return (f"yes: batch{'es' if len(replayed) > 1 else ''} {span} replayed from the journal; the editing time "
                "counts the batches edited after resuming")

    rows: list[tuple[str, Any]] = [
        ("directory", lambda r: f"<code>{escape(r['directory'])}</code>"),
        ("model", lambda r: escape(str(r["model"] or "–"))),
        ("editor", lambda r: escape(str(r["editor"] or "–"))),
        ("constraints", lambda r: escape(", ".join(r["constraints"]) or "none")
         + (f" ({escape(str(r['constrain_mode']))})" if r["constraints"] and r["constrain_mode"] else "")),
        ("edited layers", lambda r: escape(fmt.value(r["layers"]))),
        ("edits", lambda r: escape(fmt.value(r["edits"]))),
        ("batches × size", lambda r: escape(batches_and_sizes(r))),
        ("seed", lambda r: escape(fmt.value(r["seed"]))),
        ("device", lambda r: escape(fmt.value(r["device"]))),
        ("wall time", lambda r: escape(times(r))),
        ("sum of batch times", lambda r: escape(fmt.seconds(r["batch_seconds"]))),
        ("resumed", lambda r: escape(resumed(r))),
        ("skipped records", lambda r: escape(fmt.value(r["skipped_records"]))),
        ("versions", lambda r: escape(", ".join(f"{k} {v}" for k, v in r["versions"].items()
                                                if k != "platform" and v) or "–")),
        ("git commit", lambda r: f"<code>{escape(str(r['git_commit'] or '–')[:12])}</code>"),
    ]
    head = "".join(f"<th>{_swatch(colours[r['label']])}{escape(r['label'])}</th>" for r in runs)
    body = "".join(f"<tr><th>{escape(name)}</th>" + "".join(f"<td>{cell(r)}</td>" for r in runs) + "</tr>"
                   for name, cell in rows)
    names = list(dict.fromkeys(k for r in runs for k in r["hparams"]))
    differing = [k for k in names if len({repr(r["hparams"].get(k)) for r in runs}) > 1]
    shown = differing if len(runs) > 1 else []
    body += "".join(f"<tr><th>{escape(k)}</th>" + "".join(f'<td class="num">{escape(fmt.value(r["hparams"].get(k)))}'
                                                          "</td>" for r in runs) + "</tr>" for k in shown)
    full = "".join(f"<tr><th>{escape(k)}</th>" + "".join(f'<td class="num">{escape(fmt.value(r["hparams"].get(k)))}'
                                                         "</td>" for r in runs) + "</tr>" for k in names)
    note = (f"<p class=\"sub\">Hyperparameters that differ between the runs are in the table; all of them "
            f"({len(names)}) below.</p>" if len(runs) > 1 else "")
    return (f"<table><tr><th></th>{head}</tr>{body}</table>{note}"
            f"<details><summary>all hyperparameters</summary><table><tr><th></th>{head}</tr>{full}</table>"
            "</details>")


def _metrics_table(section: Mapping[str, Any], runs: Sequence[str], colours: Mapping[str, str]) -> str:
    names = section["metrics"]
    if not names:
        return _missing(section, colours)
    head = "".join(f'<th colspan="3">{_swatch(colours[label])}{escape(label)}</th>' for label in runs)
    sub = "".join("<th>before</th><th>after</th><th>after − before</th>" for _ in runs)
    body = ""
    for name in names:
        cells = ""
        for label in runs:
            row = section["runs"].get(label, {}).get(name)
            if row is None:
                cells += '<td class="num">–</td>' * 3
                continue
            cells += (f'<td class="num">{fmt.number(row["pre"])}</td><td class="num">{fmt.number(row["post"])}</td>'
                      f'<td class="num diff">{fmt.signed(row["difference"])}</td>')
        body += f"<tr><th>{escape(name)}</th>{cells}</tr>"
    return (f"<table><tr><th rowspan=\"2\">metric</th>{head}</tr><tr>{sub}</tr>{body}</table>"
            + _missing(section, colours))


def _invariant_table(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    rows = ""
    for label, data in section["runs"].items():
        for row in data["summary"]:
            passed = row["checks"] - row["failed"]
            mark = ('<span class="pass">✓ holds</span>' if not row["failed"]
                    else f'<span class="fail">✗ broken in {row["failed"]}</span>')
            final = ("–" if row["final"] is None else
                     '<span class="pass">✓</span>' if row["final"] else '<span class="fail">✗</span>')
            rows += (f"<tr><td>{_swatch(colours[label])}{escape(label)}</td><td>{escape(row['constraint'])}</td>"
                     f'<td class="num">{row["layer"]}</td><td>{escape(str(row["invariant"] or ""))}</td>'
                     f'<td class="num">{passed} of {row["checks"]}</td><td>{mark}</td>'
                     f'<td class="num">{fmt.number(row["worst"])}</td><td>{final}</td></tr>')
    if not rows:
        return ""
    return ("<table><tr><th>run</th><th>constraint</th><th>layer</th><th>invariant</th><th>checks passed</th>"
            f"<th>result</th><th>worst value</th><th>after the final stage</th></tr>{rows}</table>")


def _peak_table(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><td>{_swatch(colours[label])}{escape(label)}</td>"
                   f'<td class="num">{fmt.mebibytes(data["peak_mib_overall"])}</td><td>{escape(data["measures"])}</td>'
                   "</tr>" for label, data in section["runs"].items())
    return f"<table><tr><th>run</th><th>peak</th><th>measures</th></tr>{rows}</table>" if rows else ""


ONE_BATCH = "Every run has a single batch: no per-batch curve to draw; the values of that one batch (batch 1):"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(row) + "</tr>" for row in rows) + "</table>")


def _run_cell(label: str, colours: Mapping[str, str]) -> str:
    return f"<td>{_swatch(colours[label])}{escape(label)}</td>"


def _num(x: Any, *, count: bool = False) -> str:
    """A number cell; a ``count`` (a null space's size, read back as a float) without decimals."""
    whole = count and isinstance(x, float) and x.is_integer()
    return f'<td class="num">{fmt.number(int(x) if whole else x)}</td>'


def _one_batch_layers(section: Mapping[str, Any], colours: Mapping[str, str],
                      columns: Sequence[tuple[str, str]], counts: Sequence[str] = ()) -> str:
    """Per run and layer, the one batch's values of ``columns`` (section key, heading); ``counts``: keys that
    count things."""
    rows = [[_run_cell(label, colours), f'<td class="num">{escape(layer)}</td>',
             *(_num(series[key][0] if series[key] else None, count=key in counts) for key, _ in columns)]
            for label, layers in section["runs"].items()
            for layer, series in sorted(layers.items(), key=lambda kv: int(kv[0]))]
    return _table(["run", "layer", *(heading for _, heading in columns)], rows)


def _one_batch_vstar(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    rows = [[_run_cell(label, colours), _num(series["median_final_loss"][0]), _num(series["share_below_0.7"][0])]
            for label, series in section["runs"].items() if series["batch"]]
    return _table(["run", "v* median final loss (nats)", "share of requests with loss &lt; 0.7"], rows)


def _one_batch_timings(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    runs = list(section["runs"])
    if not runs:
        return ""
    stages = list(dict.fromkeys(s for data in section["runs"].values() for s in data["stages"]))

    def cell(label: str, stage: str) -> str:
        seconds = section["runs"][label]["seconds"].get(stage)
        return f'<td class="num">{fmt.seconds(seconds[0]) if seconds else "–"}</td>'

    head = ["stage", *(f"{_swatch(colours[label])}{escape(label)}" for label in runs)]
    rows = [[f"<th>{escape(stage)}</th>", *(cell(label, stage) for label in runs)] for stage in stages]
    return _table(head, rows)


def _curves(section: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """The curves against the number of edits; when no run has a second point (one batch, evaluated once
    after it), no curve but a sentence: the one point is the metrics table's "after"."""
    points = max((len(s["edits"]) for series in section["runs"].values() for s in series.values()), default=0)
    if points == 1:
        return ('<p class="sub">Each run was evaluated once, after its last batch: no curve to draw; those values are '
                "the metrics table's <i>after</i>.</p>")
    return _figure(figures.curves(section, colours), "metric curves",
                   "Each metric on the requests edited so far, every <code>--eval-every</code> batches; the last "
                   "point is after the last batch (all requests).")


def _per_batch(per_batch: bool, figure: Callable[[], str], table: Callable[[], str]) -> str:
    """A per-batch section's figure or, when no run has a second batch (a curve over one point has no
    axis to speak of), the one batch's values in a table, said to be so; the figure is not drawn then."""
    if per_batch:
        return figure()
    values = table()
    return f'<p class="sub">{escape(ONE_BATCH)}</p>{values}' if values else ""


def render(data: Mapping[str, Any], *, generated: str = "") -> str:
    """The page for :func:`editkit.report.data.extract`'s ``data``."""
    runs = data["runs"]
    labels = [r["label"] for r in runs]
    per_batch = data.get("most_batches", 2) > 1  # else every run has one batch: no axis for a per-batch curve
    colours = figures.run_colours(labels)
    title = "editkit report: " + ", ".join(labels)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(generated)}</p>' if generated else "",
        "<h2>Runs</h2>",
        _runs_table(runs, colours),
        "<h2>Metrics before and after editing</h2>",
        '<p class="sub">Metrics are evaluated on all of the run\'s requests before the first and after the last '
        "batch; <i>edit success</i> is the share of requests whose new target is preferred (%).</p>",
        _metrics_table(data["metrics"], labels, colours),
        "<h2>Curves against the number of edits</h2>",
        _curves(data["curves"], colours),
        _missing(data["curves"], colours),
        "<h2>Per edited layer</h2>",
        "<h3>C0 eigenvalue spectrum</h3>",
        _figure(figures.spectra(data["spectra"], colours), "C0 spectra",
                "Eigenvalues of the preserved-key second moment C0 in ascending order (log scale). Dashed: the "
                "threshold τ; dotted: the null-space size (eigenvalues left of it are below τ and span the null "
                "space that AlphaEdit projects updates onto). Eigenvalues are a downsample of the full spectrum."),
        _missing(data["spectra"], colours),
        "<h3>Kept key energy</h3>",
        _per_batch(per_batch,
                   lambda: _figure(figures.per_layer(data["kept_key_energy"], colours, "kept", title="kept key energy",
                                                     ylabel="‖P K₁‖ / ‖K₁‖", unit_interval=True), "kept key energy",
                                   "Share of the batch keys' norm inside the null space: the part of each new key the "
                                   "projected update can still act on."),
                   lambda: _one_batch_layers(data["kept_key_energy"], colours,
                                             [("kept", "kept key energy ‖P K₁‖ / ‖K₁‖"),
                                              ("null_space", "null-space size")], counts=("null_space",))),
        _missing(data["kept_key_energy"], colours),
        "<h2>Per batch</h2>",
        "<h3>Update norm per layer</h3>",
        _per_batch(per_batch,
                   lambda: _figure(figures.per_layer(data["update_norms"], colours, "norm", title="‖ΔW‖ per batch",
                                                     ylabel="‖ΔW‖ (Frobenius)"), "update norms",
                                   "Frobenius norm of what each batch wrote to the layer's weight (after all "
                                   "constraints)."),
                   lambda: _one_batch_layers(data["update_norms"], colours,
                                             [("norm", "‖ΔW‖ (Frobenius)"), ("relative", "‖ΔW‖ / ‖W‖")])),
        _missing(data["update_norms"], colours),
        "<h3>v* optimisation</h3>",
        _per_batch(per_batch,
                   lambda: _figure(figures.vstar(data["vstar"], colours), "v* losses",
                                   "The target vectors' final loss per batch (median over the batch's requests) and "
                                   "the share of requests whose loss ended below 0.7."),
                   lambda: _one_batch_vstar(data["vstar"], colours)),
        _missing(data["vstar"], colours),
        "<h3>Invariant checks</h3>",
        _invariant_table(data["invariants"], colours),
        _per_batch(per_batch,
                   lambda: _figure(figures.invariants(data["invariants"]), "invariant checks",
                                   "Each constraint's invariant measured on the update actually written, per batch "
                                   "and layer: green circles hold, red crosses are broken; grey dashes are the "
                                   "tolerances."),
                   str),  # one batch: the table above says it all
        _missing(data["invariants"], colours),
        "<h2>Stage timings and memory</h2>",
        _per_batch(per_batch,
                   lambda: _figure(figures.timings(data["timings"]), "stage timings",
                                   "Seconds per stage in each batch, stacked (same scale for every run)."),
                   lambda: _one_batch_timings(data["timings"], colours)),
        _missing(data["timings"], colours),
        _peak_table(data["peak_memory"], colours),
        _per_batch(per_batch,
                   lambda: _figure(figures.peak_memory(data["peak_memory"], colours), "peak memory",
                                   "Peak memory per batch: the highest of the batch's stages."),
                   str),  # one batch: its peak is the table's
        _missing(data["peak_memory"], colours),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
