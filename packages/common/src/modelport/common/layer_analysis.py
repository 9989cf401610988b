"""Per-layer error of an INT8 model against its FP32 twin: the one metric set and file every backend writes.

``analysis/<backend>.json`` lists, in the ONNX layer order of ``onnx/model.onnx`` (see
onnx_layers.py), each layer the backend exposes: cosine and SQNR of its output against the
FP32 twin's over the eval images, and ``own_sqnr_db``, the noise that layer itself adds
(accumulated noise out minus noise in, as an SQNR), which says which layer to keep in float.
In common because the rknn env (no modelport.bench) writes one too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .artifacts import ArtifactStore, write_atomic
from .backends import backends
from .log import console
from .onnx_layers import OnnxGraph, OnnxLayer

SCHEMA = "modelport.layer-analysis/1"
# `modelport analyze` targets, in report order: the backends whose descriptor names an analysis (nothing is
# imported here); each env's package analyses the ones its toolchain runs.
TARGETS = tuple(k for k, b in backends().items() if b.analysis)
SQNR_CAP_DB = 120.0  # identical tensors: a finite number that still sorts as "no error"


def analysis_path(backend: str) -> str:
    return f"analysis/{backend}.json"


def tensor_error(reference: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(cosine, SQNR dB) of ``test`` against ``reference`` (same number of elements)."""
    x = np.asarray(reference, np.float64).reshape(-1)
    y = np.asarray(test, np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"tensors differ in size: {x.size} vs {y.size}")
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    cosine = float(x @ y / (nx * ny)) if nx > 0 and ny > 0 else float(nx == ny)
    noise = np.linalg.norm(x - y)
    sqnr = SQNR_CAP_DB if noise == 0 else min(SQNR_CAP_DB, 20 * math.log10(max(float(nx), 1e-30) / float(noise)))
    return cosine, sqnr


def sqnr_from_cosine(cosine: float) -> float:
    """SQNR a cosine implies when the error is uncorrelated with the signal (cos = 1/sqrt(1 + 1/snr))."""
    c = min(max(cosine, 1e-9), 1.0)
    ratio = 1.0 / (c * c) - 1.0
    return SQNR_CAP_DB if ratio <= 0 else min(SQNR_CAP_DB, -10 * math.log10(ratio))


def _noise(sqnr_db: float) -> float:
    return 10 ** (-sqnr_db / 10)


def _own(sqnr_out: float, sqnr_in: float | None) -> float:
    added = _noise(sqnr_out) - (0.0 if sqnr_in is None else _noise(sqnr_in))
    return SQNR_CAP_DB if added <= 0 else min(SQNR_CAP_DB, -10 * math.log10(added))


@dataclass
class LayerErrors:
    """Collects per-image errors of the tensors a backend exposes, keyed by ONNX layer."""

    graph: OnnxGraph
    per_layer: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self, layer: OnnxLayer, backend_name: str, image: str, reference: np.ndarray, test: np.ndarray, tensor: str | None = None
    ) -> None:
        cos, sqnr = tensor_error(reference, test)
        tensor = tensor or layer.output
        row = self.per_layer.get(layer.node)
        # Several tensors of one layer (conv output and its fused activation): keep the layer's last one.
        if row is None or layer.tensors.index(tensor) > layer.tensors.index(row["tensor"]):
            row = self.per_layer[layer.node] = {
                "layer": layer,
                "backend_name": backend_name,
                "tensor": tensor,
                "cosine": {},
                "sqnr_db": {},
            }
        elif tensor != row["tensor"]:
            return
        row["cosine"][image] = cos
        row["sqnr_db"][image] = sqnr

    def rows(self) -> list[dict[str, Any]]:
        return summarize(
            self.graph,
            [
                {
                    "layer": r["layer"],
                    "backend_name": r["backend_name"],
                    "tensor": r["tensor"],
                    "cosine": list(r["cosine"].values()),
                    "sqnr_db": list(r["sqnr_db"].values()),
                }
                for r in self.per_layer.values()
            ],
        )


def summarize(graph: OnnxGraph, collected: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in ONNX layer order; ``own_sqnr_db`` from the layer's SQNR and its input layers' (mean over images)."""
    rows: list[dict[str, Any]] = []
    layers: dict[str, OnnxLayer] = {}
    for r in sorted(collected, key=lambda r: r["layer"].index):
        la: OnnxLayer = r["layer"]
        layers[la.node] = la
        cos, sq = r["cosine"], r.get("sqnr_db") or [sqnr_from_cosine(c) for c in r["cosine"]]
        rows.append(
            {
                "index": la.index,
                "node": la.node,
                "op": la.op,
                "tensor": r["tensor"],
                "backend_name": r["backend_name"],
                "images": len(cos),
                "cosine_min": float(min(cos)),
                "cosine_mean": float(np.mean(cos)),
                "sqnr_db_min": float(min(sq)),
                "sqnr_db_mean": float(np.mean(sq)),
                "sqnr_db_images": [round(float(v), 3) for v in sq],
                "cosine_images": [float(c) for c in cos],
                **({"single_cosine_min": float(min(r["single_cosine"]))} if r.get("single_cosine") else {}),
            }
        )
    measured = {row["node"]: row for row in rows}
    # The image whose model output is furthest off sets cosine_min, the floor most often missed.
    if not rows:
        return rows
    out = rows[-1]
    worst_image = int(np.argmin(out["cosine_images"]))
    for row in rows:
        if "single_cosine_min" in row:  # the toolkit measured the layer alone (float inputs): use that
            row["own_sqnr_db"] = sqnr_from_cosine(row["single_cosine_min"])
            continue
        la = layers[row["node"]]
        ins = [measured.get(src.node) for t in la.inputs if (src := _upstream(graph, t, measured))]
        sqnr_in = min((i["sqnr_db_mean"] for i in ins if i), default=None)
        row["own_sqnr_db"] = _own(row["sqnr_db_mean"], sqnr_in)
        if len(row["sqnr_db_images"]) == len(out["sqnr_db_images"]):
            worst_in = min((i["sqnr_db_images"][worst_image] for i in ins if i), default=None)
            row["own_sqnr_db_worst_image"] = _own(row["sqnr_db_images"][worst_image], worst_in)
    return rows


def _upstream(graph: OnnxGraph, tensor: str, measured: dict[str, Any]) -> OnnxLayer | None:
    """The nearest measured layer that ``tensor`` comes from (through unmeasured layers), or None at the input."""
    seen = set()
    while tensor and tensor != graph.graph_input and tensor not in seen:
        seen.add(tensor)
        la = graph.layer_of(tensor)
        if la is None:
            return None
        if la.node in measured:
            return la
        tensor = la.inputs[0] if la.inputs else ""
    return None


def worst(rows: list[dict[str, Any]], n: int, on: str = "own_sqnr_db") -> list[dict[str, Any]]:
    """The ``n`` layers that add the most error themselves (lowest own SQNR; ``on`` =
    ``own_sqnr_db_worst_image``: on the image with the worst output)."""
    return sorted(rows, key=lambda r: (r.get(on, r["own_sqnr_db"]), r["index"]))[:n]


def print_summary(data: dict[str, Any], n: int = 3) -> None:
    m = data["mapping"]
    console.print(
        f"   {data['display']}: {len(data['layers'])} layers named by onnx/model.onnx "
        f"(of {m.get('onnx_layers', '?')}), {data['seconds']} s",
        markup=False,
    )
    for r in worst(data["layers"], n):
        console.print(
            f"   worst: {r['node']} ({r['op']}, {r['backend_name']}): own SQNR {r['own_sqnr_db']:.1f} dB, "
            f"output SQNR {r['sqnr_db_mean']:.1f} dB, cosine min {r['cosine_min']:.4f}",
            markup=False,
        )


def document(
    backend: str,
    display: str,
    *,
    model: str,
    twin: str,
    images: list[str],
    rows: list[dict[str, Any]],
    mapping: dict[str, Any],
    seconds: float,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "backend": backend,
        "display": display,
        "model": model,
        "twin": twin,
        "images": images,
        "layers": rows,
        "mapping": mapping,
        "seconds": round(seconds, 1),
        "notes": notes or [],
    }


def write(store: ArtifactStore, data: dict[str, Any]) -> str:
    rel = analysis_path(data["backend"])
    write_atomic(store.path(rel), json.dumps(data, indent=1) + "\n")
    return rel


def read(store: ArtifactStore, backend: str) -> dict[str, Any] | None:
    path = store.path(analysis_path(backend))
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("schema") == SCHEMA else None
