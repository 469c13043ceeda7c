"""The report's figures, drawn with matplotlib from :func:`editkit.report.data.extract`'s sections.

Each function returns an SVG document (text) or None when no run has data for it. Figures are built
on :class:`matplotlib.figure.Figure` with the SVG canvas: no pyplot, no display, no global backend
choice; text is drawn as paths, so the SVG needs no font. Each run keeps its colour in every figure.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from editkit.report import format as fmt

PANEL_WIDTH = 3.6  # inches
PANEL_HEIGHT = 2.6
MAX_COLUMNS = 3
PASS_COLOUR = "#2a9d3f"
FAIL_COLOUR = "#d62728"
RC: Any = {"svg.fonttype": "path", "svg.hashsalt": "editkit-report", "font.size": 8, "axes.titlesize": 9,
      "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "axes.spines.top": False, "axes.spines.right": False}


def run_colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per run (matplotlib's tab10 cycle), the same in every figure."""
    from matplotlib import colormaps, colors

    cmap = colormaps["tab10"]
    return {label: colors.to_hex(cmap(i % 10)) for i, label in enumerate(labels)}


def _grid(panels: int, *, columns: int = MAX_COLUMNS, height: float = PANEL_HEIGHT,
          width: float = PANEL_WIDTH) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    columns = max(1, min(columns, panels))
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(width * columns, height * rows + 0.3), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.set_visible(False)
    return figure, axes[:panels]


def _draw(build: Callable[[], Any]) -> str:
    """Build a figure under the report's rc settings and return its SVG (no date: the same data, the same SVG)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        build().savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _integer_x(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 batch: tick 1, not 0.945…1.05


def _people_ticks(axis: Any, which: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda x, _: fmt.number(float(x)))
    (axis.yaxis if which == "y" else axis.xaxis).set_major_formatter(formatter)


def _legend(figure: Any, axes: Sequence[Any]) -> None:
    """One legend for the figure (runs), above the panels."""
    handles, labels = [], []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    if handles:
        # as many columns as fit the figure's width (legend font 7 pt: about 4.5 pt a character, 25 pt of marker)
        width_pt = figure.get_figwidth() * 72
        per_column = 25 + 4.5 * max(len(label) for label in labels)
        columns = max(1, min(len(labels), 4, int(width_pt // per_column)))
        figure.legend(handles, labels, loc="outside upper center", ncols=columns, frameon=False)


def curves(section: Mapping[str, Any], colours: Mapping[str, str]) -> str | None:
    """One panel per metric against the number of edits, one line per run."""
    metrics = [m for m in section.get("metrics", []) if any(m in s for s in section["runs"].values())]
    if not metrics:
        return None

    def build() -> Any:
        figure, axes = _grid(len(metrics))
        most = max(e for series in section["runs"].values() for s in series.values() for e in s["edits"])
        for axis, metric in zip(axes, metrics):
            for label, series in section["runs"].items():
                if metric in series:
                    s = series[metric]
                    axis.plot(s["edits"], s["values"], marker="o", markersize=3, color=colours[label], label=label)
            axis.set_title(metric)
            axis.set_xlabel("edits")
            axis.set_xlim(0, most * 1.04)  # every panel on the same scale, from no edit
            _integer_x(axis)
            _people_ticks(axis)
            axis.grid(alpha=0.3)
        _legend(figure, axes)
        return figure

    return _draw(build)


def spectra(section: Mapping[str, Any], colours: Mapping[str, str]) -> str | None:
    """Per layer: C0's eigenvalues in ascending order (log scale), the threshold τ (dashed) and the
    null-space size (dotted: the eigenvalues left of it are below τ)."""
    layers = sorted({int(layer) for layers in section["runs"].values() for layer in layers})
    if not layers:
        return None

    def build() -> Any:
        figure, axes = _grid(len(layers))
        for axis, layer in zip(axes, layers):
            floor = None
            for by_layer in section["runs"].values():
                profile = by_layer.get(str(layer))
                if profile is None:
                    continue
                positive = [v for v in profile["eigenvalues"] if v > 0]
                low = min(positive) / 10 if positive else profile["threshold"] / 100
                floor = low if floor is None else min(floor, low)
            for label, by_layer in section["runs"].items():
                profile = by_layer.get(str(layer))
                if profile is None:
                    continue
                colour = colours[label]
                values = [max(v, floor) for v in profile["eigenvalues"]]
                axis.plot(profile["index"], values, color=colour, label=label)
                axis.axhline(profile["threshold"], color=colour, linestyle="--", linewidth=0.9)
                axis.axvline(profile["null_space"], color=colour, linestyle=":", linewidth=1.2)
                axis.annotate(f"null space {profile['null_space']} of {profile['d_in']}\nτ = "
                              f"{fmt.number(profile['threshold'])}", xy=(0.03, 0.97), xycoords="axes fraction",
                              va="top", fontsize=7, color=colour)
            axis.set_yscale("log")
            axis.set_title(f"layer {layer}: C0 eigenvalues")
            axis.set_xlabel("eigenvalue rank (ascending)")
            axis.grid(alpha=0.3, which="major")
        _legend(figure, axes)
        return figure

    return _draw(build)


def per_layer(section: Mapping[str, Any], colours: Mapping[str, str], key: str, *, title: str, ylabel: str,
              unit_interval: bool = False) -> str | None:
    """Per layer: ``key`` per batch, one line per run."""
    layers = sorted({int(layer) for layers in section["runs"].values() for layer in layers})
    if not layers:
        return None

    def build() -> Any:
        figure, axes = _grid(len(layers))
        for axis, layer in zip(axes, layers):
            plotted: list[float] = []
            for label, by_layer in section["runs"].items():
                series = by_layer.get(str(layer))
                if series is None:
                    continue
                points = [(b, v) for b, v in zip(series["batch"], series[key]) if v is not None]
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, marker="o", markersize=3, color=colours[label], label=label)
                    plotted.extend(ys)
            axis.set_title(f"layer {layer}: {title}")
            axis.set_xlabel("batch")
            axis.set_ylabel(ylabel)
            if unit_interval:
                axis.set_ylim(-0.02, 1.02)
            if _spans_decades(plotted) and not unit_interval:
                axis.set_yscale("log")  # runs orders of magnitude apart
            else:
                _people_ticks(axis)
            _integer_x(axis)
            axis.grid(alpha=0.3)
        _legend(figure, axes)
        return figure

    return _draw(build)


def _spans_decades(values: Sequence[float], ratio: float = 100.0) -> bool:
    """All positive and more than ``ratio`` apart: a log scale shows them better."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > ratio


def vstar(section: Mapping[str, Any], colours: Mapping[str, str]) -> str | None:
    """v* per batch: median final loss (0.7 marked) and the share of requests below 0.7."""
    if not section["runs"]:
        return None

    def build() -> Any:
        figure, axes = _grid(2, columns=2)
        for label, series in section["runs"].items():
            axes[0].plot(series["batch"], series["median_final_loss"], marker="o", markersize=3,
                         color=colours[label], label=label)
            shares = [(b, v) for b, v in zip(series["batch"], series["share_below_0.7"]) if v is not None]
            if shares:
                xs, ys = zip(*shares)
                axes[1].plot(xs, ys, marker="o", markersize=3, color=colours[label], label=label)
        axes[0].axhline(0.7, color="grey", linestyle="--", linewidth=0.9)
        axes[0].set_title("v*: median final loss")
        axes[0].set_ylabel("loss (nats)")
        axes[1].set_title("v*: share of requests with loss < 0.7")
        axes[1].set_ylim(-0.02, 1.02)
        for axis in axes:
            axis.set_xlabel("batch")
            _integer_x(axis)
            _people_ticks(axis)
            axis.grid(alpha=0.3)
        _legend(figure, axes)
        return figure

    return _draw(build)


def invariants(section: Mapping[str, Any]) -> str | None:
    """Per run and constraint: each check's value per batch and layer, green when it holds, red when not."""
    panels = [(label, constraint) for label, data in section["runs"].items()
              for constraint in dict.fromkeys(c["constraint"] for c in data["checks"])]
    if not panels:
        return None

    def build() -> Any:
        figure, axes = _grid(len(panels))
        for axis, (label, constraint) in zip(axes, panels):
            checks = [c for c in section["runs"][label]["checks"]
                      if c["constraint"] == constraint and c["value"] is not None]
            batches = [c["batch"] for c in checks if c["batch"] != "final"]
            final_x = (max(batches) + 1) if batches else 1
            values = [c["value"] for c in checks]
            positive = [v for v in values if v > 0]
            logarithmic = _spans_decades(positive)
            floor = min(positive) / 10 if positive else 0.0
            for holds, colour, marker in ((True, PASS_COLOUR, "o"), (False, FAIL_COLOUR, "x")):
                chosen = [c for c in checks if c["holds"] is holds]
                if chosen:
                    xs = [final_x if c["batch"] == "final" else c["batch"] for c in chosen]
                    ys = [max(c["value"], floor) if logarithmic else c["value"] for c in chosen]
                    axis.scatter(xs, ys, color=colour, marker=marker, s=14,
                                 label="holds" if holds else "broken")
            tolerances = [(final_x if c["batch"] == "final" else c["batch"], c["tolerance"])
                          for c in checks if c["tolerance"] is not None]
            if tolerances:
                tol_x, tol_y = zip(*tolerances)
                axis.scatter(tol_x, tol_y, color="grey", marker="_", s=40, label="tolerance")
            if logarithmic:
                axis.set_yscale("log")
            else:
                _people_ticks(axis)
            invariant = next((c["invariant"] for c in checks if c["invariant"]), "")
            axis.set_title(f"{label}: {constraint}", loc="left")
            axis.set_ylabel(_wrap(invariant, 40))
            axis.set_xlabel("batch" + (f" ({final_x} = final)" if any(c["batch"] == "final" for c in checks)
                                       else ""))
            _integer_x(axis)
            axis.grid(alpha=0.3)
        _legend(figure, axes)
        return figure

    return _draw(build)


def _wrap(text: str, width: int) -> str:
    words, lines, line = str(text).split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def timings(section: Mapping[str, Any]) -> str | None:
    """Per run: stacked bars of seconds per stage, one bar per batch (shared y axis)."""
    labels = list(section["runs"])
    if not labels:
        return None
    stages = list(dict.fromkeys(s for data in section["runs"].values() for s in data["stages"]))

    def build() -> Any:
        from matplotlib import colormaps, colors

        cmap = colormaps["tab20"]
        stage_colours = {s: colors.to_hex(cmap(i % 20)) for i, s in enumerate(stages)}
        figure, axes = _grid(len(labels), columns=2)
        top = 0.0
        for axis, label in zip(axes, labels):
            data = section["runs"][label]
            bottom = [0.0] * len(data["batch"])
            for stage in data["stages"]:
                heights = data["seconds"][stage]
                axis.bar(data["batch"], heights, bottom=bottom, color=stage_colours[stage], label=stage, width=0.8)
                bottom = [b + h for b, h in zip(bottom, heights)]
            top = max(top, *bottom) if bottom else top
            axis.set_title(label)
            axis.set_xlabel("batch")
            axis.set_ylabel("seconds")
            _integer_x(axis)
            _people_ticks(axis)
            axis.grid(alpha=0.3, axis="y")
        for axis in axes:
            axis.set_ylim(0, top * 1.05 if top > 0 else 1)
        _legend(figure, axes)
        return figure

    return _draw(build)


def peak_memory(section: Mapping[str, Any], colours: Mapping[str, str]) -> str | None:
    """Peak memory per batch (the maximum over its stages), one line per run."""
    if not section["runs"]:
        return None

    def build() -> Any:
        figure, axes = _grid(1, columns=1, width=2 * PANEL_WIDTH)
        axis = axes[0]
        highest = max(d["peak_mib_overall"] for d in section["runs"].values())
        scale, unit = (1024.0, "GiB") if highest >= 1024 else (1.0, "MiB")
        for label, data in section["runs"].items():
            axis.plot(data["batch"], [v / scale for v in data["peak_mib"]], marker="o", markersize=3,
                      color=colours[label], label=label)
        axis.set_title("peak memory per batch")
        axis.set_xlabel("batch")
        axis.set_ylabel(unit)
        axis.set_ylim(0, highest / scale * 1.1)
        _integer_x(axis)
        _people_ticks(axis)
        axis.grid(alpha=0.3)
        _legend(figure, axes)
        return figure

    return _draw(build)
