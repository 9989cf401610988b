"""Console output: human text on stderr (stdout stays clean for machine output), progress bars."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from rich.console import Console
from rich.markup import escape  # messages name config sections like [model]: text, not markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

T = TypeVar("T")
console = Console(stderr=True, highlight=False, soft_wrap=True)
if not console.is_terminal:
    console.width = 160  # CI logs and pipes: room for the report table instead of 80 columns


PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def _bars() -> bool:
    """Live bars only on a terminal, not in CI logs, and never inside another live display (rich allows one)."""
    return console.is_terminal and not os.environ.get("CI") and not console._live_stack


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on a terminal; otherwise a line every PROGRESS_EVERY seconds (no escape-code noise)."""
    if not _bars():
        with activity(description) as tick:
            for n, item in enumerate(items, 1):
                yield item
                tick(f"{n}/{total if total is not None else _len(items) or '?'}")
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total if total is not None else _len(items))
        for item in items:
            yield item
            bar.advance(task)


@contextlib.contextmanager
def activity(description: str, every: float | None = None) -> Iterator[Any]:
    """Show that a long step is alive: a spinner with elapsed time on a terminal, else a line every
    ``every`` seconds (default PROGRESS_EVERY) with the elapsed time. Silent for steps shorter than that.

    Yields ``tick(status)``: a short status ("3/12") shown with the next line.
    """
    every = PROGRESS_EVERY if every is None else every
    state = {"status": ""}

    def tick(status: str = "") -> None:
        state["status"] = status

    if _bars():
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
        ) as bar:
            bar.add_task(description, total=None)
            yield tick
        return
    stop, started = threading.Event(), time.monotonic()

    def report() -> None:
        while not stop.wait(every):
            status = f" ({state['status']})" if state["status"] else ""
            console.print(f"   ... {escape(description)}{escape(status)}: {time.monotonic() - started:.0f} s elapsed")

    thread = threading.Thread(target=report, name="modelport-progress", daemon=True)
    thread.start()
    try:
        yield tick
    finally:
        stop.set()
        thread.join()


class LoggedProcess(subprocess.CompletedProcess[str]):
    """A finished tool run whose output went to a log; ``last_error`` is the last non-empty line the tool wrote
    to stderr, else to stdout (what a one-line error quotes)."""

    last_error: str = "no output"


def _last_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def run_logged(cmd: Sequence[str], log: Path, description: str) -> LoggedProcess:
    """Run a tool as a subprocess with its chatter in ``log`` (not on the terminal) and progress shown.

    stdout goes to the log as written; stderr passes through a pipe into the same log and is kept aside, so
    the error is the tool's last stderr line whatever order a block-buffered stdout reaches the log in.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    last_stderr = b""
    # O_APPEND: the tool's stdout writes and ours of its stderr both land at the end, neither overwrites.
    with open(log, "ab", buffering=0) as f, activity(description):
        child = subprocess.Popen(list(cmd), stdout=f, stderr=subprocess.PIPE)
        stderr = child.stderr
        assert stderr is not None
        try:
            for chunk in iter(stderr.readline, b""):
                f.write(chunk)
                if chunk.strip():
                    last_stderr = chunk
        except BaseException:  # as subprocess.run: an interrupted step leaves no tool running behind it
            child.kill()
            child.wait()
            raise
        finally:
            stderr.close()
        returncode = child.wait()
    proc = LoggedProcess(child.args, returncode)
    proc.last_error = (
        _last_line(last_stderr.decode(errors="replace")) or _last_line(log.read_text(errors="replace")) or proc.last_error
    )
    return proc


# Where in-process toolchain chatter goes when a call names no log of its own: the artifacts folder's
# logs/toolchain.log once a step has an artifact store (StepContext.store sets it).
_default_tool_log: Path | None = None


def set_tool_log(path: Path | None) -> None:
    global _default_tool_log
    _default_tool_log = path


_FD_STREAMS: dict[int, io.TextIOWrapper] = {}


def _fd_stream(fd: int) -> io.TextIOWrapper:
    """A text stream on fd 1 or 2 itself, never closed: a toolchain that keeps the sys.stdout it saw during
    ``captured`` (a logging handler made at import) writes to the restored fd afterwards, not to a closed log."""
    if fd not in _FD_STREAMS:
        _FD_STREAMS[fd] = open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    return _FD_STREAMS[fd]


def _on_fd(stream: object, fd: int) -> bool:
    try:
        return cast(bool, stream.fileno() == fd)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # StringIO and other captures have no fd
        return False


@contextlib.contextmanager
def captured(log: Path | None = None, verbose: bool = False) -> Iterator[Path | None]:
    """Send everything an in-process toolchain prints to ``log`` (default: the artifacts' toolchain log).

    At the fd level, since C++ toolchains (TFLite's XNNPACK line, rknn-toolkit2) write to fds 1 and 2
    directly, and sys.stdout/sys.stderr point at those fds, for Python prints (onnxruntime's calibration
    histograms, NNCF's bars and INFO lines) even where sys.stdout was something else (a test's capture).
    modelport's own console keeps the real stderr meanwhile. Without a log (no artifacts folder yet) or
    with ``verbose``, output is left where it goes.
    """
    log = log or _default_tool_log
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    if log is None or verbose:
        yield log
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    real_stderr = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    previous = console._file  # None: the console follows sys.stderr
    ours = console.file  # where modelport's messages went so far: fd 2, or a caller's capture (a test's StringIO)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        console.file = real_stderr if _on_fd(ours, 2) else ours
        try:
            with contextlib.redirect_stdout(_fd_stream(1)), contextlib.redirect_stderr(_fd_stream(2)):
                yield log
        finally:
            for stream in (sys.stdout, sys.stderr, _fd_stream(1), _fd_stream(2)):
                stream.flush()
            console._file = previous
            real_stderr.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _len(items: Any) -> int | None:
    try:
        return len(items)
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
