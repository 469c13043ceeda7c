"""What ``editkit report`` shows, extracted from run directories' ``result.json`` (no torch, no matplotlib).

:func:`load_run` reads and checks one run directory; :func:`extract` turns runs into the report's
data: plain JSON (``editkit report --json``), from which :mod:`editkit.report.figures` draws every
plot. Each section holds, per run label, the data behind one figure, and under ``missing`` why a run
has none ("no --eval-every curve", "not a null-space run"): a missing piece is stated, never an error.

Where things are in ``result.json`` (see :mod:`editkit.job.pipeline`): ``summary``, ``metrics`` (pre/post
and seconds), ``curve`` (``--eval-every``), ``run`` (editor, constraints, hyperparameters, sites),
``batches`` (per batch: ``timings``, ``peak_memory_mib`` and per-layer notes such as
``nullspace.kept_key_energy``, ``nullspace.spectrum``, ``update.norm``, ``vstar.*`` and
``<constraint>.invariant``), ``final`` (invariants after the end-of-run constraint stage), ``manifest``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from editkit.errors import InputError

__all__ = ["FORMAT", "RESULT_FILE", "RUN_OWNED", "LoadedRun", "extract", "load_run", "load_runs", "owned_by_run"]

FORMAT = "editkit-report/1"
RESULT_FILE = "result.json"
REQUIRED = ("summary", "run", "batches")  # without these a result.json is not a finished run's
RUN_OWNED = (RESULT_FILE, "deltas.safetensors", "journal", ".editkit-run.lock")
"""What ``editkit run`` writes into its run directory and reads back (:mod:`editkit.job.rundir`,
:mod:`editkit.job.journal`): no other command may write over any of it. ``report.html`` is not among them:
``run --report`` writes the run's page there, and ``editkit report`` may rewrite it."""

METRIC_ORDER = ("efficacy", "generalisation", "specificity", "retention", "fluency", "consistency", "perplexity")
"""Curve panels in this order first (the rest alphabetically)."""

INVARIANT_SUFFIX = ".invariant"


@attrs.frozen(kw_only=True)
class LoadedRun:
    """One run directory and its parsed ``result.json``."""

    label: str
    directory: Path
    result: Mapping[str, Any] = attrs.field(repr=False)


def load_run(directory: str | Path, label: str | None = None) -> LoadedRun:
    """Read ``directory/result.json``; :class:`InputError` naming the directory or file when it is not a
    finished run's (no such directory, no result.json, truncated or not JSON, required sections missing)."""
    directory = Path(directory)
    if not directory.exists():
        raise InputError(f"{directory}: no such run directory")
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory (give a run's --out directory, which holds {RESULT_FILE})")
    path = directory / RESULT_FILE
    if not path.is_file():
        hint = ""
        if (directory / "journal" / "manifest.json").is_file():
            hint = f"; it holds an unfinished run's journal: finish it with `editkit run --resume {directory}`"
        raise InputError(f"{directory}: not an editkit run directory (no {RESULT_FILE}){hint}")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON, truncated or damaged? ({error.msg} at line {error.lineno}, "
                         f"column {error.colno})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if not isinstance(result, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(result).__name__}")
    missing = [key for key in REQUIRED if not isinstance(result.get(key), (dict, list))]
    if missing:
        raise InputError(f"{path}: not an editkit result (missing {', '.join(missing)})")
    if not isinstance(result["batches"], list) or not all(isinstance(b, dict) for b in result["batches"]):
        raise InputError(f"{path}: 'batches' must be a list of objects")
    return LoadedRun(label=label or directory.resolve().name or str(directory), directory=directory, result=result)


def load_runs(directories: Sequence[str | Path]) -> list[LoadedRun]:
    """:func:`load_run` for each directory, with labels unique (the directory name, else its parent/name,
    else numbered)."""
    if not directories:
        raise InputError("no run directory given")
    paths = [Path(d) for d in directories]
    labels = [p.resolve().name or str(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}: {label}" for i, label in enumerate(labels)]
    return [load_run(p, label) for p, label in zip(paths, labels)]


def _is_run_directory(directory: Path) -> bool:
    return (directory / RESULT_FILE).is_file() or (directory / "journal" / "manifest.json").is_file()


def owned_by_run(path: str | Path, runs: Sequence[str | Path] = ()) -> str | None:
    """Why ``path`` must not be written, in words ("the run directory R", "result.json of the run in R",
    "inside the journal of the run in R"), or None: it is one of the run directories ``runs`` (what a command
    reads), or it is or lies in what a run directory owns (:data:`RUN_OWNED`) — of ``runs`` or of any directory
    above ``path`` that holds a run. Paths are compared resolved (symbolic links followed, ``..`` removed)."""
    target = Path(path).resolve()
    directories = [Path(r).resolve() for r in runs]
    directories += [a for a in (target, *target.parents) if a not in directories and _is_run_directory(a)]
    for directory in directories:
        if target == directory:
            return f"the run directory {directory}"
        if directory not in target.parents:
            continue
        owned = target.relative_to(directory).parts[0]
        if owned in RUN_OWNED:
            what = "the journal" if owned == "journal" else owned
            return f"{'' if target == directory / owned else 'inside '}{what} of the run in {directory}"
    return None


# ---------------------------------------------------------------------------------------------- helpers


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _batches(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [b for b in result.get("batches", []) if isinstance(b, dict)]


def _batch_number(batch: Mapping[str, Any], position: int) -> int:
    """Batches are numbered from 1 on the page (the journal's index + 1)."""
    index = batch.get("index")
    return (index if isinstance(index, int) else position) + 1


def _layer_notes(batch: Mapping[str, Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    for key, notes in sorted(_dict(batch.get("layers")).items(), key=lambda kv: _layer_key(kv[0])):
        if isinstance(notes, dict):
            yield _layer_key(key), notes


def _layer_key(key: Any) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        return -1


def _section() -> dict[str, Any]:
    return {"runs": {}, "missing": {}}


# ---------------------------------------------------------------------------------------------- sections


def overview(run: LoadedRun) -> dict[str, Any]:
    """What the run was: model, editor, constraints, hyperparameters, sizes, seed, versions, times."""
    result = run.result
    summary = _dict(result.get("summary"))
    described = _dict(result.get("run"))
    manifest = _dict(result.get("manifest"))
    config = _dict(manifest.get("config"))
    batches = _batches(result)
    replayed = replayed_batches(batches)
    eval_seconds = {phase: sum(v for v in map(_number, _dict(times).values()) if v is not None)
                    for phase, times in _dict(_dict(result.get("metrics")).get("seconds")).items()}
    model = _dict(manifest.get("model")).get("name")
    sites = [s for s in described.get("sites", []) if isinstance(s, dict)]
    hparams: dict[str, Any] = {}
    for owner, values in _dict(described.get("hparams")).items():
        for name, v in _dict(values).items():
            hparams[f"{owner}.{name}"] = v
    return {
        "label": run.label,
        "directory": str(run.directory),
        "model": model,
        "editor": described.get("editor"),
        "constraints": list(described.get("constraints", [])),
        "constrain_mode": described.get("constrain_mode"),
        "layers": [s.get("layer") for s in sites],
        "hparams": hparams,
        "edits": summary.get("requests"),
        "batches": summary.get("batches", len(batches)),
        "batch_size": config.get("batch_size"),
        "batch_sizes": batch_sizes(result),
        "seed": manifest.get("seed", config.get("seed")),
        "device": config.get("device"),
        "versions": _dict(manifest.get("versions")),
        "git_commit": manifest.get("git_commit"),
        "edit_seconds": _number(summary.get("edit_seconds")),
        "batch_seconds": sum(_number(b.get("seconds")) or 0.0 for b in batches),
        "eval_seconds": eval_seconds,
        "skipped_records": summary.get("skipped_records", 0),
        "replayed_batches": replayed,
        "resumed": bool(replayed),
    }


def batch_sizes(result: Mapping[str, Any]) -> list[int] | None:
    """How many requests each batch edited, in order: the batches' own ``size`` (what ``batches × size``
    shows; the configured batch size is not what a short last batch, or a run smaller than one batch, held).
    From ``summary.requests`` and the configured batch size when the batches do not record it (the run cut its
    requests into batches of that size, the last one shorter); ``None`` when neither tells."""
    batches = _batches(result)
    sizes = [s for b in batches if isinstance(s := b.get("size"), int) and not isinstance(s, bool) and s > 0]
    if batches and len(sizes) == len(batches):
        return sizes
    requests = _dict(result.get("summary")).get("requests")
    size = _dict(_dict(result.get("manifest")).get("config")).get("batch_size")
    if not (isinstance(requests, int) and isinstance(size, int) and requests > 0 and size > 0):
        return None
    derived = [min(size, requests - start) for start in range(0, requests, size)]
    return derived if not batches or len(derived) == len(batches) else None


def most_batches(runs: Sequence[LoadedRun]) -> int:
    """The largest number of batches of any run: with at most one, per-batch figures have no axis to draw."""
    return max((len(_batches(run.result)) for run in runs), default=0)


def replayed_batches(batches: Sequence[Mapping[str, Any]]) -> list[int]:
    """Batch numbers (from 1) a resumed run replayed from its journal rather than edited in its last process.

    Marked ``"replayed": true`` by editkit; in results written before that mark existed, the replayed
    batches are the leading ones without peak memory when later batches have it."""
    marked = [_batch_number(b, i) for i, b in enumerate(batches) if b.get("replayed") is True]
    if marked or any("replayed" in b for b in batches):
        return marked
    has_memory = [bool(_dict(b.get("peak_memory_mib"))) for b in batches]
    if not any(has_memory):
        return []
    leading = has_memory.index(True)
    return [_batch_number(b, i) for i, b in enumerate(batches[:leading])]


def metrics_table(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per metric (rows) and run: before, after, after − before. ``edit success`` is the run's own
    efficacy_pre/post (the share of requests whose new target is preferred)."""
    names: list[str] = []
    per_run: dict[str, dict[str, dict[str, float | None]]] = {}
    missing: dict[str, str] = {}
    for run in runs:
        metrics = _dict(run.result.get("metrics"))
        pre, post = _dict(metrics.get("pre")), _dict(metrics.get("post"))
        summary = _dict(run.result.get("summary"))
        rows: dict[str, dict[str, float | None]] = {}
        if "efficacy_pre" in summary or "efficacy_post" in summary:
            rows["edit success"] = _row(_percent(summary.get("efficacy_pre")), _percent(summary.get("efficacy_post")))
        for key in _ordered([*pre, *post]):
            rows[key] = _row(_number(pre.get(key)), _number(post.get(key)))
        if not pre and not post:
            missing[run.label] = "no metrics were evaluated (--metrics none)"
        for key in rows:
            if key not in names:
                names.append(key)
        per_run[run.label] = rows
    return {"metrics": names, "runs": per_run, "missing": missing}


def _percent(x: Any) -> float | None:
    x = _number(x)
    return None if x is None else 100.0 * x


def _row(pre: float | None, post: float | None) -> dict[str, float | None]:
    return {"pre": pre, "post": post, "difference": post - pre if pre is not None and post is not None else None}


def _ordered(keys: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(keys))
    known = [k for k in METRIC_ORDER if k in unique]
    rest = sorted(k for k in unique if k not in METRIC_ORDER)
    # a metric's magnitude next to it
    ordered: list[str] = []
    for key in known + rest:
        if key in ordered:
            continue
        ordered.append(key)
        # beside a teacher-forced figure: its magnitude, then the same figure judged by generation
        for companion in (f"{key}_magnitude", f"generation_{key}"):
            if companion in rest and companion not in ordered:
                ordered.append(companion)
    return ordered


_COUNT_SUFFIXES = ("_probes", "_prompts", "_questions", "_generations")


def _is_count(key: str) -> bool:
    """Keys that count things (``retention_probes``, ``generation_prompts``, ``*_skipped_*``) are not curves."""
    return key.endswith(_COUNT_SUFFIXES) or "_skipped_" in key


def curves(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per metric, per run: the ``--eval-every`` points (edits so far, value); panels in METRIC_ORDER."""
    section = _section()
    names: list[str] = []
    for run in runs:
        points = [p for p in run.result.get("curve") or [] if isinstance(p, dict)]
        if not points:
            evaluated = bool(_dict(_dict(run.result.get("metrics")).get("post")))
            section["missing"][run.label] = ("no curve: the run was not evaluated during editing (run it with "
                                             "--eval-every K)" if evaluated else
                                             "no curve: no metrics were evaluated (--metrics none)")
            continue
        series: dict[str, dict[str, list[Any]]] = {}
        for point in sorted(points, key=lambda p: (_number(p.get("edits")) or 0)):
            edits = _number(point.get("edits"))
            if edits is None:
                continue
            for key, v in point.items():
                if key in ("edits", "batches") or _is_count(key) or _number(v) is None:
                    continue
                s = series.setdefault(key, {"edits": [], "batches": [], "values": []})
                s["edits"].append(int(edits))
                s["batches"].append(point.get("batches"))
                s["values"].append(_number(v))
        section["runs"][run.label] = series
        names.extend(series)
    section["metrics"] = _ordered(names)
    return section


def spectra(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per run, per layer: C0's sorted eigenvalues (downsampled), the threshold and the null-space size."""
    section = _section()
    for run in runs:
        layers: dict[str, Any] = {}
        for batch in _batches(run.result):
            for layer, notes in _layer_notes(batch):
                profile = notes.get("nullspace.spectrum")
                if isinstance(profile, dict) and str(layer) not in layers and _valid_profile(profile):
                    layers[str(layer)] = {k: profile[k] for k in ("d_in", "threshold", "null_space", "index",
                                                                   "eigenvalues")}
        if layers:
            section["runs"][run.label] = layers
        elif "nullspace" in _dict(run.result.get("run")).get("constraints", []):
            section["missing"][run.label] = ("no C0 spectrum in result.json (written by editkit versions that "
                                             "record nullspace.spectrum)")
        else:
            section["missing"][run.label] = "no C0 spectrum: the run did not use the null-space constraint"
    return section


def _valid_profile(profile: Mapping[str, Any]) -> bool:
    index, values = profile.get("index"), profile.get("eigenvalues")
    return (isinstance(index, list) and isinstance(values, list) and len(index) == len(values) > 0
            and all(_number(v) is not None for v in values) and _number(profile.get("threshold")) is not None
            and isinstance(profile.get("null_space"), int) and isinstance(profile.get("d_in"), int))


def per_layer_series(runs: Sequence[LoadedRun], keys: Mapping[str, str], *, absent: str) -> dict[str, Any]:
    """Per run, per layer: the batch numbers and each note of ``keys`` (output name → note key) per batch.
    ``absent`` is the page's words for a run without any of them."""
    section = _section()
    for run in runs:
        layers: dict[str, dict[str, list[Any]]] = {}
        for position, batch in enumerate(_batches(run.result)):
            for layer, notes in _layer_notes(batch):
                values = {name: _number(notes.get(key)) for name, key in keys.items()}
                if all(v is None for v in values.values()):
                    continue
                series = layers.setdefault(str(layer), {"batch": [], **{name: [] for name in keys}})
                series["batch"].append(_batch_number(batch, position))
                for name, v in values.items():
                    series[name].append(v)
        if layers:
            section["runs"][run.label] = layers
        else:
            section["missing"][run.label] = absent
    return section


def kept_key_energy(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """‖P K1‖ / ‖K1‖ per layer and batch: the share of the batch keys' norm inside the null space."""
    return per_layer_series(runs, {"kept": "nullspace.kept_key_energy", "null_space": "nullspace.dim"},
                            absent="not recorded: the run did not use the null-space constraint")


def update_norms(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """‖ΔW‖ of what each batch wrote, per layer (absolute and relative to ‖W‖ before the batch)."""
    return per_layer_series(runs, {"norm": "update.norm", "relative": "update.relative"},
                            absent="not recorded (result.json written before editkit recorded update.norm)")


def vstar(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per run, per batch: v*'s median final loss and the share of requests whose loss ended below 0.7."""
    section = _section()
    for run in runs:
        series: dict[str, list[Any]] = {"batch": [], "median_final_loss": [], "share_below_0.7": []}
        for position, batch in enumerate(_batches(run.result)):
            for _, notes in _layer_notes(batch):
                median = _number(notes.get("vstar.median_final_loss"))
                if median is None:
                    continue
                series["batch"].append(_batch_number(batch, position))
                series["median_final_loss"].append(median)
                series["share_below_0.7"].append(_number(notes.get("vstar.share_below_0.7")))
                break
        if series["batch"]:
            section["runs"][run.label] = series
        else:
            section["missing"][run.label] = f"no v* losses: editor {_dict(run.result.get('run')).get('editor')!r} " \
                                            "records none"
    return section


def invariants(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Every invariant check (per batch and after the final constraint stage), with pass/fail, and per
    constraint and layer a summary: checks, failures, worst value."""
    section = _section()
    for run in runs:
        checks: list[dict[str, Any]] = []
        sources: list[tuple[int | str, Mapping[str, Any]]] = [
            (_batch_number(b, i), b) for i, b in enumerate(_batches(run.result))
        ]
        final = run.result.get("final")
        if isinstance(final, dict):
            sources.append(("final", final))
        for batch, report in sources:
            for layer, notes in _layer_notes(report):
                for key, figures in notes.items():
                    if not key.endswith(INVARIANT_SUFFIX) or not isinstance(figures, dict):
                        continue
                    checks.append({
                        "batch": batch, "layer": layer, "constraint": key[: -len(INVARIANT_SUFFIX)],
                        "invariant": figures.get("invariant"), "value": _number(figures.get("value")),
                        "tolerance": _number(figures.get("tolerance")), "holds": figures.get("holds") is not False,
                    })
        if not checks:
            constraints = _dict(run.result.get("run")).get("constraints", [])
            section["missing"][run.label] = ("no invariant checks: the run used no constraint" if not constraints
                                             else f"no invariant checks recorded for {', '.join(constraints)}")
            continue
        summary: dict[str, dict[str, Any]] = {}
        for check in checks:
            key = f"{check['constraint']} · layer {check['layer']}"
            row = summary.setdefault(key, {"constraint": check["constraint"], "layer": check["layer"],
                                           "invariant": check["invariant"], "checks": 0, "failed": 0,
                                           "worst": None, "final": None})
            row["checks"] += 1
            row["failed"] += 0 if check["holds"] else 1
            if check["value"] is not None and (row["worst"] is None or check["value"] > row["worst"]):
                row["worst"] = check["value"]
            if check["batch"] == "final":
                row["final"] = check["holds"]
        section["runs"][run.label] = {"checks": checks, "summary": list(summary.values())}
    return section


def timings(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per run: seconds per stage per batch (stacked bars), stages in the order the run recorded them."""
    section = _section()
    for run in runs:
        batches = _batches(run.result)
        stages: list[str] = []
        for batch in batches:
            stages.extend(s for s in _dict(batch.get("timings")) if s not in stages)
        if not stages:
            section["missing"][run.label] = "no stage timings recorded"
            continue
        section["runs"][run.label] = {
            "batch": [_batch_number(b, i) for i, b in enumerate(batches)],
            "stages": stages,
            "seconds": {s: [_number(_dict(b.get("timings")).get(s)) or 0.0 for b in batches] for s in stages},
            "total": [_number(b.get("seconds")) for b in batches],
        }
    return section


def peak_memory(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Per run and batch: the peak over the batch's stages (MiB) and per stage; what it measures
    depends on the device (CUDA allocator peak, or the process's resident peak on CPU: per stage on Linux, where it
    is reset after each stage, and the process's peak so far elsewhere)."""
    section = _section()
    for run in runs:
        batches = _batches(run.result)
        device = str(_dict(_dict(run.result.get("manifest")).get("config")).get("device") or "cpu")
        series: dict[str, Any] = {"batch": [], "peak_mib": [], "by_stage": {},
                                  "measures": "CUDA allocator peak" if device.startswith("cuda")
                                  else "peak RSS (per stage on Linux; elsewhere the process peak so far)"}
        for position, batch in enumerate(batches):
            stages = {k: n for k, v in _dict(batch.get("peak_memory_mib")).items() if (n := _number(v)) is not None}
            if not stages:
                continue
            series["batch"].append(_batch_number(batch, position))
            series["peak_mib"].append(max(stages.values()))
            for stage, v in stages.items():
                series["by_stage"].setdefault(stage, {})[str(_batch_number(batch, position))] = v
        if series["batch"]:
            series["peak_mib_overall"] = max(series["peak_mib"])
            section["runs"][run.label] = series
        else:
            section["missing"][run.label] = "no peak memory recorded"
    return section


def extract(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """The report's data: every table and the data behind every figure, as JSON."""
    return {
        "format": FORMAT,
        "runs": [overview(run) for run in runs],
        "most_batches": most_batches(runs),
        "metrics": metrics_table(runs),
        "curves": curves(runs),
        "spectra": spectra(runs),
        "kept_key_energy": kept_key_energy(runs),
        "update_norms": update_norms(runs),
        "vstar": vstar(runs),
        "invariants": invariants(runs),
        "timings": timings(runs),
        "peak_memory": peak_memory(runs),
    }
