"""One progress interface for every long loop: `start(label, total)` then `advance(n)`.

Library code takes a `Progress` and never prints; the CLI and the pipeline pass a `Bar` (a rich
progress bar on stderr), tests and callers that want silence pass nothing (`SILENT`).
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console


class Progress(Protocol):
    def start(self, label: str, total: int | None) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


SILENT: Progress = _Silent()


class Bar:
    """A transient rich bar with count, elapsed time and ETA; each `start` replaces the previous task."""

    def __init__(self, console: Console | None = None, label: str | None = None, total: int | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[cyan]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._task = None
        if label is not None:
            self.start(label, total)

    def __enter__(self) -> Bar:
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def start(self, label: str, total: int | None) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)
