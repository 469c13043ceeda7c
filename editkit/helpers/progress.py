"""Progress reporting: rich progress bars on a terminal, plain lines on anything else (a log file, a
pipe), or nothing (tests, ``--quiet``).

:func:`progress_display` chooses by whether stderr is a terminal; :func:`model_loading` does the
same for loading a model (transformers' own bar is silenced unless bars are shown).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, TextIO

Style = Literal["off", "bars", "lines"]


class Task(Protocol):
    def advance(self, n: float = 1) -> None: ...
    def update(self, *, total: float | None = None, description: str | None = None) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None, completed: float = 0) -> Task: ...
    def finish(self, task: Task) -> None: ...


def progress_style(enabled: bool, stream: TextIO | None = None) -> Style:
    """``off`` when not ``enabled``, ``bars`` when ``stream`` (default stderr) is a terminal, else ``lines``."""
    if not enabled:
        return "off"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "bars" if isatty is not None and isatty() else "lines"


def clock_text(seconds: float) -> str:
    """``h:mm:ss``."""
    whole = max(0, round(seconds))
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def task(self, description: str, total: float | None, completed: float = 0) -> Task:
        return _NullTask()

    def finish(self, task: Task) -> None:
        pass


class _RichTask:
    def __init__(self, progress, task_id) -> None:  # type: ignore[no-untyped-def]
        self._progress = progress
        self.id = task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self.id, n)

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        kwargs: dict[str, float | str] = {}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._progress.update(self.id, **kwargs)


class RichProgress:
    """A live rich progress display; use :func:`rich_progress` to scope it."""

    def __init__(self, progress) -> None:  # type: ignore[no-untyped-def]
        self._progress = progress

    def task(self, description: str, total: float | None, completed: float = 0) -> Task:
        return _RichTask(self._progress, self._progress.add_task(description, total=total, completed=completed))

    def finish(self, task: Task) -> None:
        if isinstance(task, _RichTask):
            self._progress.remove_task(task.id)


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr when enabled, else :class:`NullProgress`."""
    if not enabled:
        yield NullProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as _Progress

    console = Console(stderr=True)
    with _Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield RichProgress(progress)


class _LineTask:
    def __init__(self, owner: LineProgress, description: str, total: float | None, completed: float,
                 nested: bool) -> None:
        self._owner = owner
        self.description = description
        self.total = total
        self.completed = completed
        self.nested = nested
        self.started = owner.clock()
        self.start_count = completed  # what was done before (resumed): not part of the rate

    @property
    def running(self) -> bool:
        return self.total is not None and self.completed < self.total

    def advance(self, n: float = 1) -> None:
        self.completed += n
        self._owner.report(self)

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description

    def line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"{self.description}: {self.completed:g}/{self.total:g}, elapsed {clock_text(elapsed)}"
        done = self.completed - self.start_count
        if self.total is not None and self.completed >= self.total:
            return text + ", done"
        if done > 0 and elapsed > 0 and self.total is not None:
            return text + f", ETA {clock_text(elapsed / done * (self.total - self.completed))}"
        return text + ", ETA -"


class LineProgress:
    """Plain progress lines, flushed one at a time, for output that is not a terminal.

    A counted task opened while no other counted task is running (e.g. the run's batches) gets a line
    when it starts and after every step (``edit batches: 2/6, elapsed 0:04:10, ETA 0:08:20``). A counted
    task opened inside one (e.g. a batch's optimisation steps) gets a line at most every ``interval``
    seconds. A task without a total (a phase, e.g. an evaluation) gets a line when it starts and one
    when it is finished, with its duration.
    """

    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic,
                 interval: float = 30.0) -> None:
        self._stream = stream
        self.clock = clock
        self.interval = interval
        self._tasks: list[_LineTask] = []
        self._last_line = clock()

    def _print(self, text: str) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        print(text, file=stream, flush=True)
        self._last_line = self.clock()

    def task(self, description: str, total: float | None, completed: float = 0) -> Task:
        nested = total is not None and any(t.running for t in self._tasks)
        task = _LineTask(self, description, total, completed, nested)
        self._tasks.append(task)
        if total is None:
            self._print(f"{description} ...")
        elif not nested:
            self._print(task.line(task.started) + (" (resumed)" if completed else ""))
        return task

    def report(self, task: _LineTask) -> None:
        if task.total is None:
            return
        now = self.clock()
        if not task.nested or now - self._last_line >= self.interval:
            self._print(task.line(now))

    def finish(self, task: Task) -> None:
        if not isinstance(task, _LineTask):
            return
        if task in self._tasks:
            self._tasks.remove(task)
        if task.total is None:
            self._print(f"{task.description}: done in {clock_text(self.clock() - task.started)}")


@contextmanager
def progress_display(enabled: bool = True, stream: TextIO | None = None) -> Iterator[Progress]:
    """Rich bars on a terminal, :class:`LineProgress` elsewhere, nothing when not ``enabled``
    (``stream``: default stderr)."""
    style = progress_style(enabled, stream)
    if style == "lines":
        yield LineProgress(stream)
        return
    with rich_progress(enabled=style == "bars") as progress:
        yield progress


@contextmanager
def model_loading(name: str, enabled: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """Around loading a model: transformers' own loading bar is shown only with bars (a terminal);
    with plain lines one line says what is loaded and one how long it took; nothing when not
    ``enabled`` (``--quiet``). The bar's previous setting is restored afterwards."""
    style = progress_style(enabled, stream)
    if style == "bars":
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    started = time.monotonic()
    try:
        if style == "lines":
            print(f"loading model {name} ...", file=sys.stderr if stream is None else stream, flush=True)
        yield
        if style == "lines":
            print(f"loaded model {name} in {clock_text(time.monotonic() - started)}",
                  file=sys.stderr if stream is None else stream, flush=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
