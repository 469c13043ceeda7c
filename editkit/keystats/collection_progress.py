"""Progress of a collection: a rich bar on stderr with tokens, tokens/s and ETA when stderr is a
terminal, plain lines when it is not (a log file, a pipe), or nothing.

The bar counts tokens. A collection ends at the token budget ``max_tokens`` or when the corpus runs out
of documents, whichever comes first, so its fraction is the larger of tokens / ``max_tokens`` and
documents / ``samples`` — ``samples`` being how many documents the corpus selection yields, when that
is known (its sample cap, or the size of a local file: :meth:`~editkit.keystats.corpus.CorpusSpec.size`).
A corpus smaller than the budget therefore ends at 100%, not at its share of the budget. The ETA
extrapolates the time spent in this process from the fraction done in it; when neither limit is known
there is no fraction: no percentage and no ETA, only counts and time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

from editkit.helpers.progress import clock_text, progress_style


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
        fraction = _fraction(tokens, documents, self._max_tokens, self._samples)
        # the bar's total: the tokens the whole collection will hold, as far as the fraction tells (None: unchanged)
        total = _total(tokens, fraction) if fraction else None
        self._progress.update(self._task, completed=tokens, total=total, documents=documents, fraction=fraction)


def _total(tokens: int, fraction: float) -> int:
    """The tokens of the whole collection when ``tokens`` are ``fraction`` of it."""
    return tokens if fraction >= 1.0 else max(tokens, round(tokens / fraction))


def _fraction(tokens: int, documents: int, max_tokens: int | None, samples: int | None) -> float | None:
    fractions = []
    if max_tokens:
        fractions.append(tokens / max_tokens)
    if samples:
        fractions.append(documents / samples)
    return min(1.0, max(fractions)) if fractions else None


class Lines:
    """Plain progress lines: one at the start, one at each further tenth of the work (or, when the
    amount of work is not known, every ``interval`` seconds), one at the end; each flushed."""

    def __init__(self, description: str, *, max_tokens: int | None, samples: int | None, start_tokens: int = 0,
                 start_documents: int = 0, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = 60.0) -> None:
        self._description = description
        self._max_tokens = max_tokens
        self._samples = samples
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._started = clock()
        self._tokens, self._documents = start_tokens, start_documents
        self._start_fraction = _fraction(start_tokens, start_documents, max_tokens, samples) or 0.0
        self._tenths = int(self._start_fraction * 10)  # tenths of the work reported so far
        self._last = self._started
        limit = f"up to {max_tokens:,} tokens" if max_tokens else "every document"
        if samples:
            limit += f" of {samples:,} document{'s' if samples != 1 else ''}"
        resumed = f", resuming at {start_tokens:,} tokens" if start_tokens else ""
        self._print(f"{description}: collecting ({limit}{resumed})")

    def _print(self, text: str) -> None:
        print(text, file=sys.stderr if self._stream is None else self._stream, flush=True)
        self._last = self._clock()

    def update(self, *, tokens: int, documents: int) -> None:
        self._tokens, self._documents = tokens, documents
        fraction = _fraction(tokens, documents, self._max_tokens, self._samples)
        now = self._clock()
        if fraction is not None:
            tenths = int(fraction * 10)
            if tenths <= self._tenths or fraction >= 1.0:
                return
            self._tenths = tenths
        elif now - self._last < self._interval:
            return
        elapsed = now - self._started
        text = f"{self._description}: {tokens:,} tokens, {documents:,} docs"
        if fraction is not None:
            done = fraction - self._start_fraction
            eta = clock_text(elapsed * (1.0 - fraction) / done) if done > 0 else "-"
            text += f" ({fraction:.0%}), elapsed {clock_text(elapsed)}, ETA {eta}"
        else:
            text += f", elapsed {clock_text(elapsed)}"
        self._print(text)

    def close(self) -> None:
        self._print(f"{self._description}: done, {self._tokens:,} tokens, {self._documents:,} docs in "
                    f"{clock_text(self._clock() - self._started)}")


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
            done = (fraction or 0.0) - task.fields.get("start_fraction", 0.0)  # the share done in this process
            elapsed = task.elapsed
            if not fraction or not elapsed or fraction >= 1.0 or done <= 0:
                return Text("ETA —", style="progress.remaining")
            left = int(elapsed * (1.0 - fraction) / done)
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
    description: str, *, enabled: bool, max_tokens: int | None, samples: int | None, start_tokens: int = 0,
    start_documents: int = 0,
) -> Iterator[CollectionProgress]:
    """When ``enabled``: a live progress bar on a terminal, else plain lines (:class:`Lines`); when
    not, a silent stand-in. ``samples``: how many documents the corpus selection yields, None if unknown;
    ``start_tokens`` / ``start_documents``: where a resumed collection starts."""
    style = progress_style(enabled)
    if style == "off":
        yield _Silent()
        return
    if style == "lines":
        lines = Lines(description, max_tokens=max_tokens, samples=samples, start_tokens=start_tokens,
                      start_documents=start_documents)
        yield lines
        lines.close()
        return
    from rich.console import Console
    from rich.progress import Progress

    start = _fraction(start_tokens, start_documents, max_tokens, samples)
    total = None if samples else max_tokens  # with a known corpus size, the first update estimates the total
    if start:
        total = _total(start_tokens, start)
    with Progress(*_columns(), console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, completed=start_tokens, documents=start_documents,
                                 fraction=start, start_fraction=start or 0.0)
        yield _Rich(progress, task, max_tokens, samples)
