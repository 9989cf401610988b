"""rknn-toolkit2's ``error_analysis.txt`` (from ``accuracy_analysis``) as rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import toolkit

_ROW = re.compile(r"^\[(?P<type>[^\]]+)\]\s+(?P<rest>.*?)\s*$")
_NUM = r"(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf)"
_PAIR = re.compile(_NUM + r"\s*\|\s*" + _NUM, re.IGNORECASE)


def parse_error_analysis(text: str) -> list[dict[str, Any]]:
    """Layers in file order: index, type, name and, per error group (``simulator``, ``runtime`` with a board),
    ``{"entire": {"cosine", "euclidean"}, "single": {...}}``. Fused layers the toolkit prints without
    numbers get ``metrics == {}``."""
    groups: list[str] = []
    layers: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.lstrip().startswith("layer_name") and "_error" in line:  # "simulator_error" [+ "runtime_error"]
            groups = [g.removesuffix("_error") for g in re.findall(r"(\w+)_error", line)]
            continue
        m = _ROW.match(line.strip())
        if not m:
            continue
        rest = m.group("rest")
        pairs = list(_PAIR.finditer(rest))
        name = (rest[: pairs[0].start()] if pairs else rest).strip()
        metrics = {}
        for g, i in zip(groups or ["simulator"], range(0, len(pairs), 2), strict=False):
            if i + 1 < len(pairs):
                metrics[g] = {
                    part: {"cosine": float(p.group(1)), "euclidean": float(p.group(2))}
                    for part, p in (("entire", pairs[i]), ("single", pairs[i + 1]))
                }
        layers.append({"index": len(layers), "type": m.group("type"), "name": name, "metrics": metrics})
    if not layers:
        raise ValueError("no layer rows found (not an rknn-toolkit2 error_analysis.txt?)")
    return layers


def accuracy_analysis(rk: Any, npy: str, snap: Path, log: Path, path: Path) -> None:
    """The toolkit's accuracy_analysis of ``rk``'s build on one input (``npy``), written to ``snap``."""
    toolkit.call(rk.accuracy_analysis, inputs=[npy], output_dir=str(snap), what="accuracy_analysis", log=log, path=path)
