"""Progress of a collection: a rich bar on stderr with tokens, tokens/s and ETA, or nothing.

The bar counts tokens. Its fraction is the larger of tokens / ``max_tokens`` and documents /
``samples`` (whichever limit is known); the ETA extrapolates elapsed time from that fraction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class CollectionProgress(Protocol):
    def update(self, *, tokens: int, documents: int) -> None: ...


class _Silent:
    def update(self, *, tokens: int, documents: int) -> None:
        pass


class _Rich:
    def __init__(self, progress: Any, task: Any, max_tokens: int | None, samples: int | None) -> None:
        self._progress = progress
        self._task = task
        self._max_tokens = max_tokens
        self._samples = samples

    def update(self, *, tokens: int, documents: int) -> None:
        fractions = []
        if self._max_tokens:
            fractions.append(tokens / self._max_tokens)
        if self._samples:
            fractions.append(documents / self._samples)
        fraction = min(1.0, max(fractions)) if fractions else None
        self._progress.update(self._task, completed=tokens, documents=documents, fraction=fraction)


def _columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class TokenRate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("— tok/s" if speed is None else f"{speed:,.0f} tok/s", style="progress.data.speed")

    class Eta(ProgressColumn):
        def render(self, task: Any) -> Text:
            fraction = task.fields.get("fraction")
            elapsed = task.elapsed
            if not fraction or not elapsed or fraction >= 1.0:
                return Text("ETA —", style="progress.remaining")
            left = int(elapsed * (1.0 - fraction) / fraction)
            return Text(f"ETA {left // 3600:d}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")

    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} tokens, {task.fields[documents]:,} docs"),
        TokenRate(),
        TimeElapsedColumn(),
        Eta(),
    )


@contextmanager
def collection_progress(
    description: str, *, enabled: bool, max_tokens: int | None, samples: int | None, start_tokens: int = 0
) -> Iterator[CollectionProgress]:
    """A live progress bar (``enabled``) or a silent stand-in."""
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*_columns(), console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=max_tokens, completed=start_tokens, documents=0, fraction=None)
        yield _Rich(progress, task, max_tokens, samples)
