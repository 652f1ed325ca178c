"""A progress bar over a generator's stream: used by every command and stage that generates."""

from __future__ import annotations

from rich.console import Console

from rtune.generation.base import in_request_order


def generate_with_progress(generator, requests: list, label: str, console: Console | None = None) -> list:
    """Results in request order, with a progress bar while they come in (cache hits first)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn(f"[cyan]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=len(requests))

        def advancing():
            for pair in generator.stream(requests):
                progress.advance(task)
                yield pair

        return in_request_order(advancing(), len(requests))
