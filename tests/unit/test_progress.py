"""Progress output: plain lines when stderr is not a terminal (a log file), bars on a terminal, nothing
when quiet. A fake clock stands in for time; nothing sleeps."""

from __future__ import annotations

import io

import pytest

from editkit.helpers.progress import (
    LineProgress,
    NullProgress,
    clock_text,
    model_loading,
    progress_display,
    progress_style,
)
from editkit.keystats.collection_progress import Lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_style_follows_the_stream():
    assert progress_style(False, Terminal()) == "off"
    assert progress_style(True, Terminal()) == "bars"
    assert progress_style(True, io.StringIO()) == "lines"


def test_progress_display_writes_lines_to_a_log_and_nothing_when_disabled():
    log = io.StringIO()
    with progress_display(enabled=True, stream=log) as progress:
        assert isinstance(progress, LineProgress)
        progress.finish(progress.task("evaluate (pre)", None))
    assert "evaluate (pre) ..." in log.getvalue()
    with progress_display(enabled=False, stream=log) as progress:
        assert isinstance(progress, NullProgress)


def test_a_line_per_batch_with_elapsed_and_eta():
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(out, clock=clock)
    task = progress.task("edit batches", 4)
    for _ in range(4):
        clock.now += 60
        task.advance(1)
    assert out.getvalue().splitlines() == [
        "edit batches: 0/4, elapsed 0:00:00, ETA -",
        "edit batches: 1/4, elapsed 0:01:00, ETA 0:03:00",
        "edit batches: 2/4, elapsed 0:02:00, ETA 0:02:00",
        "edit batches: 3/4, elapsed 0:03:00, ETA 0:01:00",
        "edit batches: 4/4, elapsed 0:04:00, done",
    ]


def test_a_resumed_task_estimates_from_the_batches_done_in_this_process():
    out, clock = io.StringIO(), Clock()
    task = LineProgress(out, clock=clock).task("edit batches", 6, completed=2)
    clock.now += 30
    task.advance(1)
    assert out.getvalue().splitlines() == ["edit batches: 2/6, elapsed 0:00:00, ETA - (resumed)",
                                           "edit batches: 3/6, elapsed 0:00:30, ETA 0:01:30"]


def test_phases_get_a_start_and_a_done_line():
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(out, clock=clock)
    task = progress.task("evaluate (post)", None)
    clock.now += 75
    progress.finish(task)
    assert out.getvalue().splitlines() == ["evaluate (post) ...", "evaluate (post): done in 0:01:15"]


def test_steps_inside_a_batch_are_reported_at_most_every_interval():
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(out, clock=clock, interval=30)
    batches = progress.task("edit batches", 2)
    steps = progress.task("batch 0: v*", 25)
    for _ in range(25):
        clock.now += 5
        steps.advance(1)
    progress.finish(steps)
    clock.now += 1
    batches.advance(1)
    lines = out.getvalue().splitlines()
    nested = [line for line in lines if line.startswith("batch 0: v*")]
    assert len(nested) == 4  # 125 s of steps, one line per 30 s at most
    assert nested[0] == "batch 0: v*: 6/25, elapsed 0:00:30, ETA 0:01:35"
    assert lines[0].startswith("edit batches: 0/2") and lines[-1].startswith("edit batches: 1/2")


def test_clock_text():
    assert clock_text(0) == "0:00:00" and clock_text(3723.4) == "1:02:03" and clock_text(-1) == "0:00:00"


def test_key_statistics_collection_lines_at_each_tenth():
    out, clock = io.StringIO(), Clock()
    lines = Lines("C0 layers 1, 2", max_tokens=1000, samples=None, stream=out, clock=clock)
    for tokens in range(50, 1001, 50):
        clock.now += 1
        lines.update(tokens=tokens, documents=tokens // 10)
    lines.close()
    text = out.getvalue().splitlines()
    assert text[0] == "C0 layers 1, 2: collecting (up to 1,000 tokens)"
    assert text[1] == "C0 layers 1, 2: 100 tokens, 10 docs (10%), elapsed 0:00:02, ETA 0:00:18"
    assert len(text) == 1 + 9 + 1  # 10% .. 90%, then done
    assert text[-1] == "C0 layers 1, 2: done, 1,000 tokens, 100 docs in 0:00:20"


def test_key_statistics_lines_without_a_known_amount_of_work_are_timed():
    out, clock = io.StringIO(), Clock()
    lines = Lines("C0 layers 3", max_tokens=None, samples=None, stream=out, clock=clock, interval=60)
    for step in range(1, 13):
        clock.now += 15
        lines.update(tokens=step * 100, documents=step)
    text = out.getvalue().splitlines()
    assert text == ["C0 layers 3: collecting (every document)",
                    "C0 layers 3: 400 tokens, 4 docs, elapsed 0:01:00",
                    "C0 layers 3: 800 tokens, 8 docs, elapsed 0:02:00",
                    "C0 layers 3: 1,200 tokens, 12 docs, elapsed 0:03:00"]


@pytest.mark.parametrize(("enabled", "stream", "bar_during", "lines"),
                         [(False, io.StringIO(), False, 0), (True, io.StringIO(), False, 2),
                          (True, Terminal(), True, 0)])
def test_model_loading_silences_transformers_bar_unless_bars_are_shown(enabled, stream, bar_during, lines):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    with model_loading("some/model", enabled=enabled, stream=stream):
        assert hf_logging.is_progress_bar_enabled() is bar_during
    assert hf_logging.is_progress_bar_enabled()  # restored
    assert len(stream.getvalue().splitlines()) == lines
