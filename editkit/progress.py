"""Progress reporting: a rich progress bar, or nothing (tests, ``--quiet``, non-TTY)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, n: float = 1) -> None: ...
    def update(self, *, total: float | None = None, description: str | None = None) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None) -> Task: ...
    def finish(self, task: Task) -> None: ...


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def task(self, description: str, total: float | None) -> Task:
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
        kwargs = {}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._progress.update(self.id, **kwargs)


class RichProgress:
    """A live rich progress display; use :func:`rich_progress` to scope it."""

    def __init__(self, progress) -> None:  # type: ignore[no-untyped-def]
        self._progress = progress

    def task(self, description: str, total: float | None) -> Task:
        return _RichTask(self._progress, self._progress.add_task(description, total=total))

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
