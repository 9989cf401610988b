"""Peak memory of a step: the RSS high-water mark, reset at the step's start.

RSS (not tracemalloc) because the memory that takes a machine down is mostly native:
onnxruntime's calibration buffers, TensorFlow, the toolkits' C++ allocations. tracemalloc
sees only Python's allocator and slows every allocation. Linux resets a process's peak RSS
on ``echo 5 > /proc/self/clear_refs``; elsewhere the process-wide peak is the upper bound.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """This process's peak RSS since the last reset_peak() (MB)."""
    with contextlib.suppress(OSError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def children_peak_rss_mb() -> float:
    """Largest peak RSS of any finished child process (tf2onnx runs in one), MB; 0 when none."""
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
