"""What machine a number was measured on, and the device key that identifies it across machines."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

DEVICE_ENV = "MODELPORT_DEVICE"  # overrides the derived device key (a board's name, a farm label)
RUN_ENV = "MODELPORT_RUN_ID"  # one id for every step of one pipeline run (nox sets it once)


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "in_container": os.path.exists("/.dockerenv") or bool(os.environ.get("MODELPORT_IN_CONTAINER")),
    }


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)|\bcpu\b|\bprocessor\b|@.*$", " ", text.lower())
    return re.sub(r"[^a-z0-9._]+", "-", text).strip("-._")


def _gpu() -> str | None:
    """NVIDIA GPU name and driver version, when a driver is there (nvidia-smi is the driver's own tool)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            .stdout.strip()
            .splitlines()
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out[0].replace(",", " driver") if out else None


def _soc() -> str | None:
    """An SoC from the device tree (a Rockchip RK3588 board says rockchip,rk3588), plus the NPU driver version."""
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes().split(b"\0")
    except OSError:
        return None
    chips = [c.decode(errors="replace").split(",", 1)[-1] for c in compatible if c.startswith((b"rockchip,", b"nvidia,"))]
    if not chips:
        return None
    try:
        npu = Path("/sys/kernel/debug/rknpu/version").read_text().strip().split(":")[-1].strip()
    except OSError:
        npu = ""
    return " ".join(filter(None, [chips[-1], f"rknpu {npu}" if npu else ""]))


@lru_cache(maxsize=1)
def device_key() -> str:
    """What a result's speed belongs to: architecture, CPU model, GPU + driver, SoC/NPU (MODELPORT_DEVICE wins).

    Results from two machines merge side by side because their keys differ; speed ratios are
    only taken between rows of one key.
    """
    if os.environ.get(DEVICE_ENV):
        return _slug(os.environ[DEVICE_ENV]) or "device"
    info = machine_info()
    parts = [info["arch"], info["cpu"], _soc() or "", _gpu() or ""]
    return _slug(" ".join(p for p in parts if p))[:96]


@lru_cache(maxsize=1)
def run_id() -> str:
    """This pipeline run: MODELPORT_RUN_ID when set (nox sets one per invocation), else one per process."""
    return os.environ.get(RUN_ENV) or new_run_id()


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


NOT_EXPOSED = "not exposed here"
SYSFS_ENV = "MODELPORT_SYSFS"  # where /sys is read from (a test points it at a folder it made)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _number(path: Path) -> float | None:
    text = _read(path)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) != float("inf") else None


def _cpus(root: Path) -> list[Path]:
    return sorted((root / "devices/system/cpu").glob("cpu[0-9]*"), key=lambda p: int(p.name[3:]))


def throttle_count(root: Path | None = None) -> int | None:
    """Sum of the kernel's thermal throttle events over every CPU (x86 thermal_throttle), None when not exposed."""
    root = root or Path(os.environ.get(SYSFS_ENV) or "/sys")
    counts = [
        _number(cpu / "thermal_throttle" / name)
        for cpu in _cpus(root)
        for name in ("core_throttle_count", "package_throttle_count")
    ]
    known = [int(c) for c in counts if c is not None]
    return sum(known) if known else None


def run_conditions(root: Path | None = None) -> dict[str, Any]:
    """What the CPU was doing when a number was taken, read from sysfs: governor, current and maximum
    frequency (MHz, over the CPUs), SMT, thermal zones (deg C). A value the kernel does not expose here
    is the text NOT_EXPOSED, never a guess (containers and VMs often hide cpufreq and thermal)."""
    root = root or Path(os.environ.get(SYSFS_ENV) or "/sys")
    cpus = _cpus(root)
    governors = sorted({g for g in (_read(c / "cpufreq/scaling_governor") for c in cpus) if g})
    cur = [f for f in (_number(c / "cpufreq/scaling_cur_freq") for c in cpus) if f is not None]
    top = [f for f in (_number(c / "cpufreq/cpuinfo_max_freq") for c in cpus) if f is not None]
    smt = _read(root / "devices/system/cpu/smt/active")
    thermal: dict[str, float] = {}
    for zone in sorted((root / "class/thermal").glob("thermal_zone*")):
        temp = _number(zone / "temp")
        if temp is not None:
            thermal[f"{_read(zone / 'type') or 'zone'} ({zone.name})"] = round(temp / 1000, 1)
    return {
        "governor": ", ".join(governors) if governors else NOT_EXPOSED,
        # kHz in sysfs; the slowest and fastest CPU now, and the highest maximum
        "cur_mhz": f"{min(cur) / 1000:.0f}-{max(cur) / 1000:.0f}" if cur else NOT_EXPOSED,
        "max_mhz": f"{max(top) / 1000:.0f}" if top else NOT_EXPOSED,
        "smt": {"1": "on", "0": "off"}.get(smt or "", NOT_EXPOSED),
        "thermal_c": thermal or NOT_EXPOSED,
    }
