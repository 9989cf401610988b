"""Wheels an offline build cannot get from PyPI (the CPU torch wheel rknn-toolkit2 needs).

A Dockerfile that declares ARG TORCH_INDEX_URL (envs/rknn's) installs with `--find-links
envs/<env>/wheelhouse` plus that extra index, which defaults to PyTorch's CPU index (the online behaviour on
a user's machine). PyTorch's index is not reachable here, so CI puts the wheel into
the wheelhouse with `pip download` (this machine's pip finds it locally) and builds
with TORCH_INDEX_URL= (empty). The wheels it adds are removed again by `cleanup()`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADDED: list[Path] = []


def _pinned(requirements: Path, name: str) -> str:
    m = re.search(rf"^{name}==(\S+)", requirements.read_text(), re.M)
    if not m:
        raise RuntimeError(f"{requirements}: no `{name}==` pin")
    return m.group(1)


def build_args(env: str, declared: set[str], log: callable = print) -> dict[str, str]:
    if "TORCH_INDEX_URL" not in declared:
        return {}
    house = ROOT / "envs" / env / "wheelhouse"
    torch = _pinned(ROOT / "envs" / env / "requirements.txt", "torch")
    before = set(house.glob("*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            f"torch=={torch}",
            "--python-version",
            "3.11",
            "--only-binary=:all:",
            "-d",
            str(house),
        ],
        check=True,
    )
    ADDED.extend(set(house.glob("*.whl")) - before)
    wheels = sorted(p.name for p in house.glob("torch-*.whl"))
    log(f"{env}: wheelhouse {house.relative_to(ROOT)}: {', '.join(wheels)}; TORCH_INDEX_URL= (offline)")
    return {"TORCH_INDEX_URL": ""}


def cleanup(log: callable = print) -> None:
    for wheel in ADDED:
        wheel.unlink(missing_ok=True)
        log(f"removed {wheel.relative_to(ROOT)}")
    ADDED.clear()
