"""One descriptor per backend: what the registries, the report, the depth tools and CI derive from.

A backend is a row of the report: a key (results/<key>.json and the CLI name), the env
whose toolchain runs it, its precision (which accuracy floors apply), where it sorts,
its FP32 twin if it is INT8, the runtime class that runs it, the conversion target
that makes it and its per-layer INT8 analysis (``"module:Name"`` strings, imported only
when used), and the knobs `modelport depth tune` searches (config keys -> the values to try).

Every backend package (packages/tflite, ort, ncnn, tensorrt, openvino, rknn) registers its own
through the ``modelport.backends`` entry-point group (a list of Backend, written with keyword
arguments), the way it adds CLI commands through ``modelport.commands``: a new toolchain is its
own package plus an env. This module holds only the descriptor type and the discovery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

Floors = Literal["float", "int8"]
# A tuning knob's values: 1, 2 and this machine's core count (resolved where the search runs).
# The first knob with these values is the backend's thread count, which the depth sweeps vary too.
THREADS = "threads"


@dataclass(frozen=True, kw_only=True)
class Backend:
    """A report row's descriptor (see the module docstring); build it with keyword arguments."""

    key: str
    display: str
    env: str  # the toolchain env (envs/<env>) whose steps make and measure it
    precision: str  # fp32 / fp16 / int8
    rank: int  # where its row sorts in the report (the source model first)
    runtime: str | None = None  # "module:Class", a modelport.runtime Runtime; None: its env's own step writes the row
    target: str | None = None  # "module[:obj]" conversion target of the same name
    fp32_twin: str | None = None  # an INT8 backend's float counterpart (speed and per-layer comparison)
    batch_twin: str | None = None  # "module:Class" of the dynamic-batch runtime the depth sweeps use
    depth: bool = False  # takes part in `modelport depth` (tuning, sweeps, harness overhead)
    needs: str | None = None  # "gpu" / "board": hardware this machine may lack (then a skipped row, with its reason)
    source: bool = False  # the source model's own runtime: the reference row
    default_row: bool = True  # made by its env's default steps (`nox -s convert bench rknn`): CI expects it
    # `depth tune`'s search space: config key -> values (or THREADS), in the order the knobs are tried
    tuning: Mapping[str, Sequence[Any]] = field(default_factory=dict, hash=False)
    numeric: tuple[str, ...] = ()  # knobs whose non-default values can change the outputs: kept only above the floors
    analysis: str | None = None  # "module:NAME" of its per-layer INT8 analysis (`modelport analyze <key>` in its env)

    @property
    def thread_knob(self) -> str | None:
        return next((k for k, v in self.tuning.items() if v == THREADS), None)

    @property
    def floors(self) -> Floors:
        return "int8" if "int8" in self.precision else "float"  # a hybrid (int8+fp16) is held to the INT8 floors


@cache
def backends() -> dict[str, Backend]:
    """Every backend by key, in report order: those the installed backend packages register."""
    found: list[Backend] = []
    for ep in entry_points(group="modelport.backends"):
        found += list(ep.load())
    keys = [b.key for b in found]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise RuntimeError(f"backend keys registered twice: {', '.join(dup)}")
    return {b.key: b for b in sorted(found, key=lambda b: (b.rank, b.key))}


def get(key: str) -> Backend | None:
    return backends().get(key)


def rank(key: str) -> int:
    """Report position of ``key``; rows of backends this install does not know sort last."""
    b = get(key)
    return b.rank if b is not None else 10**6


def floors_of(key: str, precision: str | None = None) -> Floors:
    """Which floors a row is held to: its descriptor's, else (a row from a backend not installed here) its precision's."""
    b = get(key)
    return b.floors if b is not None else ("int8" if "int8" in (precision or "") else "float")


def catalogue() -> dict[str, dict[str, Any]]:
    """The descriptors as plain data (the report's JSON carries it, so CI and other tools need no install)."""
    return {k: asdict(b) | {"floors": b.floors} for k, b in backends().items()}
