"""The progress of `sls-kafka backfill`: rich's bars on a terminal, periodic log lines otherwise.

rich comes with the `cli` extra (`pip install 'sls-kafka-processor[cli]'`); the function's package does not ship
it, and without it a terminal gets the log lines too.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol, TextIO

from processor.backfill.runs import ShardProgress

# The lines are the command's output: they carry its name, whichever module draws them.
log = logging.getLogger("processor.commands.backfill")


class ProgressView(Protocol):
    def show(self, progress: ShardProgress) -> None: ...

    def update(self, progress: ShardProgress) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


def progress_view(stream: TextIO, every: float, shards: list[ShardProgress]) -> ProgressView:
    """Bars on a terminal when `rich` is installed (the `cli` extra), log lines every `every` seconds otherwise.

    Every shard of `shards` is shown from the start, in order, those waiting for a worker process included.
    """
    view: ProgressView
    if stream.isatty():
        try:
            view = RichProgressView(stream)
        except ModuleNotFoundError:
            log.info("progress bars need rich: pip install 'sls-kafka-processor[cli]'; logging progress instead")
            view = LogProgressView(every)
    else:
        view = LogProgressView(every)
    for progress in sorted(shards, key=lambda p: p.shard):
        view.show(progress)
    return view


class LogProgressView:
    """Every shard's line, logged every `every` seconds (whether reports came or not) and once at the end."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.shards: dict[int, ShardProgress] = {}
        self._last: float | None = None

    def show(self, progress: ShardProgress) -> None:
        self.shards[progress.shard] = progress

    def update(self, progress: ShardProgress) -> None:
        self.show(progress)
        self.tick()

    def tick(self) -> None:
        if self.shards and (self._last is None or time.monotonic() - self._last >= self.every):
            self._log()

    def close(self) -> None:
        if self.shards:
            self._log()

    def _log(self) -> None:
        self._last = time.monotonic()
        for _, p in sorted(self.shards.items()):
            log.info("%s", line(p))


class RichProgressView:
    """One bar per shard, redrawn in place by rich; log lines written meanwhile appear above the bars."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        # Started at the first report, once the workers are forked: rich's redraw must not run in them.
        self.progress = Progress(TextColumn("shard {task.fields[shard]}"), BarColumn(bar_width=20),
                                 TextColumn("{task.fields[detail]}"), console=Console(file=stream),
                                 auto_refresh=False, redirect_stdout=False)
        self.tasks: dict[int, Any] = {}
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._drawn = 0.0

    def show(self, progress: ShardProgress) -> None:
        fields = {"completed": progress.log_groups_done, "total": progress.log_groups_total or 1,
                  "detail": _detail(progress)}
        task = self.tasks.get(progress.shard)
        if task is None:
            self.tasks[progress.shard] = self.progress.add_task("", shard=progress.shard, **fields)
        else:
            self.progress.update(task, **fields)

    def update(self, progress: ShardProgress) -> None:
        if not self.progress.live.is_started:
            self._start()
        self.show(progress)
        self.tick()

    def tick(self) -> None:
        if self.progress.live.is_started and time.monotonic() - self._drawn >= 0.1:
            self._redraw()

    def close(self) -> None:
        if self.progress.live.is_started:
            self._redraw()
            self.progress.stop()
        for handler, stream in self._handlers:
            handler.setStream(stream)

    def _start(self) -> None:
        self.progress.start()
        # The live display replaced sys.stderr by a proxy that prints above the bars; the log handlers still
        # hold the terminal itself, where the next redraw would overwrite what they wrote.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.progress.console.file:
                self._handlers.append((handler, handler.setStream(sys.stderr)))

    def _redraw(self) -> None:
        self._drawn = time.monotonic()
        self.progress.refresh()


def line(p: ShardProgress) -> str:
    """`shard 3 [#######-------------]  35.0%  700/2000 groups  70000 records  15000/s  ETA 0:00:09`."""
    fraction = p.log_groups_done / p.log_groups_total if p.log_groups_total else 1.0
    bar = "#" * round(20 * fraction) + "-" * (20 - round(20 * fraction))
    return f"shard {p.shard} [{bar}] {_detail(p)}"


def _detail(p: ShardProgress) -> str:
    fraction = p.log_groups_done / p.log_groups_total if p.log_groups_total else 1.0
    records = p.records_read + p.records_in_event
    rate = records / p.seconds if p.seconds > 0 else 0.0
    if p.error:
        state = f"FAILED: {p.error}"
    elif p.complete:
        state = f"done in {p.seconds:.1f}s"
    else:
        group_rate = p.log_groups_done / p.seconds if p.seconds > 0 else 0.0
        left = p.log_groups_total - p.log_groups_done
        state = f"ETA {_clock(left / group_rate)}" if group_rate > 0 else "ETA -"
    return (f"{100 * fraction:5.1f}%  {p.log_groups_done}/{p.log_groups_total} groups  {records} records  "
            f"{rate:.0f}/s  {state}")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
