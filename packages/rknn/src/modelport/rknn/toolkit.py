"""rknn-toolkit2 behind one door: availability, quiet calls with their log kept, errors as one line, adb cleanup.

The toolkit is imported only inside ``session()``: importing it pulls torch (~3 s), and
`modelport doctor` / the error checks before a build must not pay for that or fail on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from modelport.common.errors import ModelportError, ToolchainMissing
from modelport.common.log import activity, captured, console

DIST = "rknn-toolkit2"
# Printed on every successful 2.5.0 build: noise, not an error.
_NOISE = ("Unkown op target: 0",)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unavailable_reason() -> str | None:
    """Why rknn-toolkit2 cannot run here (None = it can). Cheap: nothing is imported."""
    if importlib.util.find_spec("rknn") is None or importlib.util.find_spec("rknn.api") is None:
        return f"{DIST} is not installed (envs/rknn: pip install --no-deps -r envs/rknn/requirements-nodeps.txt)"
    if importlib.util.find_spec("torch") is None:
        return f"{DIST} imports torch.nn, and torch is not installed (CPU wheel; see envs/rknn/requirements.txt)"
    if importlib.util.find_spec("pkg_resources") is None:
        return f"{DIST} needs pkg_resources, which setuptools>=81 removed: pip install 'setuptools<81'"
    return None


def tool_version() -> str:
    try:
        return f"{DIST} {version(DIST)}"
    except PackageNotFoundError:
        return f"{DIST} (not installed)"


def require() -> None:
    reason = unavailable_reason()
    if reason:
        raise ToolchainMissing(reason)


def versions() -> dict[str, str]:
    out = {}
    for dist in (DIST, "torch", "onnx", "onnxruntime", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out


_E_LINE = re.compile(r"^\s*E\s+(?:[\w.]+:\s?)?(.*)$")  # "E build: <text>" or "E <text>"
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def error_lines(log: Path, limit: int = 3) -> list[str]:
    """The toolkit's own errors from its ``E ...`` lines, the real one last.

    The toolkit prints a Python traceback as ``E build: Traceback ...`` lines: its frames are
    dropped and its final exception line (``ValueError: ...``) kept, so a summary names the cause.
    """
    try:
        text = _ANSI.sub("", log.read_text(errors="replace"))
    except FileNotFoundError:
        return []
    found: list[str] = []
    for raw in text.splitlines():
        m = _E_LINE.match(raw)
        if not m or any(n in raw for n in _NOISE):
            continue
        body = m.group(1)
        content = body.strip()
        if not content or content.startswith(("Traceback", 'File "', "^")) or body.startswith((" ", "\t")):
            continue  # a traceback frame, its source line or its caret marker
        line = content if _EXCEPTION.match(content) else raw.strip()
        if line in found:
            found.remove(line)  # tracebacks repeat lines: keep each once, at its last place
        found.append(line)
    real = [ln for ln in found if _EXCEPTION.match(ln)]
    return (found if not real else [ln for ln in found if ln not in real][-(limit - 1) :] + real[-1:])[-limit:]


def last_exception(text: str) -> str | None:
    """The final ``XxxError: message`` in a traceback the toolkit folded into an exception's text."""
    for m in reversed(list(re.finditer(r"\b[A-Z]\w*(?:Error|Exception):", text))):
        line = text[m.start() :].strip().splitlines()[0]
        if not text[m.end() :].lstrip().startswith("Traceback"):  # "ValueError: Traceback ..." is the wrapper
            return line
    return None


def call(fn: Callable[..., Any], *args: Any, what: str, log: Path, path: Path | None = None, **kwargs: Any) -> Any:
    """Run one toolkit call; a -1 return or an exception becomes a ModelportError naming ``path``."""
    try:
        with activity(f"{DIST} {what}"):
            ret = fn(*args, **kwargs)
    except Exception as e:  # the toolkit raises bare ValueError/RuntimeError after printing "E ..."
        found = error_lines(log)
        real = last_exception(f"{type(e).__name__}: {e}")  # its message may hold the whole traceback
        if real and real not in found:
            found.append(real)
        raise ModelportError(f"{DIST} {what} failed: {' | '.join(found)} (full log: {log})", path) from None
    if isinstance(ret, int) and ret != 0:
        found = error_lines(log) or [f"returned {ret}"]
        raise ModelportError(f"{DIST} {what} failed: {' | '.join(found)} (full log: {log})", path)
    return ret


@contextlib.contextmanager
def session(log: Path, workdir: Path, verbose: bool = False) -> Iterator[Any]:  # rknn.api.RKNN: untyped
    """An ``RKNN`` object, run inside ``workdir`` (the toolkit writes files into the cwd), always released."""
    require()
    with captured(log, verbose), contextlib.chdir(workdir):
        from rknn.api import RKNN  # heavy (imports torch): only when a step really runs

        rknn = RKNN(verbose=False)
        try:
            yield rknn
        finally:
            rknn.release()


# -- adb: the toolkit starts its bundled adb server (tcp:5037, daemonized) to look for boards.
def _adb_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if os.path.basename(exe) == "adb":
            pids.add(int(entry.name))
    return pids


@contextlib.contextmanager
def adb_guard() -> Iterator[None]:
    """Stop, by PID, any adb server that appeared while the block ran (one that was already running is left alone)."""
    before = _adb_pids()
    try:
        yield
    finally:
        for pid in sorted(_adb_pids() - before):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 15)
                console.print(f"   stopped the adb server rknn-toolkit2 started (pid {pid})")
