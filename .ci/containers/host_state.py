"""What a Docker engine can leave on the host (network links, iptables rules, processes, its temp root),
snapshotted before and compared after, so CI proves the container test cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _iptables() -> set[str]:
    rules = set()
    for tool in ("iptables", "ip6tables"):
        if shutil.which(f"{tool}-save"):
            out = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
            rules |= {f"{tool}: {line}" for line in out.splitlines() if line.startswith(("-A", "-N", ":DOCKER"))}
    return rules


def snapshot() -> dict:
    return {"links": _links(), "iptables": _iptables()}


def _processes_under(root: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmd:
            found.append(f"pid {proc.name}: {cmd[:120]}")
    return found


def leftovers(before: dict, engine) -> list[str]:
    after = snapshot()
    problems = [f"new network link {x}" for x in sorted(after["links"] - before["links"])]
    problems += [f"new rule {x}" for x in sorted(after["iptables"] - before["iptables"])]
    if engine.proc is not None and engine.proc.poll() is None:
        problems.append(f"dockerd pid {engine.proc.pid} still running")
    if engine.created_root is not None:
        if engine.created_root.exists():
            problems.append(f"{engine.created_root} still exists")
        problems += _processes_under(engine.created_root)
    return problems
