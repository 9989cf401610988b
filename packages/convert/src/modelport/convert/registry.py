"""Every conversion target, by name, imported only when used.

A target is a ``Converter`` (base.py) named as ``"pkg.mod:NAME"``: ``run(ctx, force) -> list[Path]``,
``unavailable_reason() -> str | None`` and ``tool_version() -> str``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from modelport.common.backends import backends
from modelport.common.doctor import Check
from modelport.common.registry import installed, load

# Steps that make no report row of their own: the reference outputs, and what backend packages register in
# the ``modelport.steps`` entry-point group (the QDQ model TensorRT builds from, the dynamic-batch twins the
# depth sweeps use: the static models stay the default artifacts).
STEPS: dict[str, str] = {"reference": "modelport.convert.reference:TARGET"} | {
    ep.name: ep.value for ep in sorted(entry_points(group="modelport.steps"), key=lambda e: e.name)
}
# A descriptor's target may live in a package this env does not install (onnx's is the tflite package's).
TARGETS: dict[str, str] = (
    {"reference": STEPS["reference"]} | {k: b.target for k, b in backends().items() if b.target and installed(b.target)} | STEPS
)


def target_module(name: str) -> Any:
    return load(TARGETS, name, "target")


def doctor_rows() -> list[Check]:
    rows = []
    for name in TARGETS:
        mod = target_module(name)
        reason = mod.unavailable_reason()
        rows.append(Check("convert", name, reason is None, reason or mod.tool_version()))
    return rows
