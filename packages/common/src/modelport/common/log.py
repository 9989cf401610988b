"""Console output: human text on stderr (stdout stays clean for machine output), progress bars."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape  # messages name config sections like [model]: text, not markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
console = Console(stderr=True, highlight=False, soft_wrap=True)
if not console.is_terminal:
    console.width = 160  # CI logs and pipes: room for the report table instead of 80 columns


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on a terminal; nothing on CI logs (no escape-code noise)."""
    if not console.is_terminal or os.environ.get("CI"):
        yield from items
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(description, total=total if total is not None else _len(items))
        for item in items:
            yield item
            bar.advance(task)


def _len(items) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def step(message: str) -> None:
    console.print(f"[bold cyan]>>[/] {escape(message)}")


def skip(message: str) -> None:
    console.print(f"[yellow]skip[/] {escape(message)}")


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}")


def failed(message: str) -> None:
    """A step that failed while the command goes on (the command's own `error:` line comes at the end)."""
    console.print(f"[red]failed[/] {escape(message)}")
