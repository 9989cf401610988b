"""RKNN INT8 per-layer rows (the toolkit's accuracy_analysis, parsed) in the common analysis form, mapped to
ONNX layers by name (what `rknn analyze` and the INT8 search's rankings share; layers.py says how)."""

from __future__ import annotations

from typing import Any

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext

from .convert import MODELS

KEY = "rknn-int8"
OWN_TYPES = ("Input", "exDataConvert")  # toolkit-internal rows, never an ONNX layer


def document(ctx: StepContext, data: dict[str, Any], graph: onnx_layers.OnnxGraph, model: str = MODELS["int8"]) -> dict[str, Any]:
    collected: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    images = [img["image"] for img in data["images"]]
    for img in data["images"]:
        for row in img["layers"]:
            m = row["metrics"].get("simulator")
            if row["type"] in OWN_TYPES or not m:
                continue
            layer = graph.layer_of(row["name"]) or graph.by_node(row["name"])
            if layer is None:
                if row["name"] not in unmapped:
                    unmapped.append(row["name"])
                continue
            tensor = row["name"] if row["name"] in layer.tensors else layer.output
            got = collected.get(layer.node)
            if got and layer.tensors.index(tensor) < layer.tensors.index(got["tensor"]):
                continue
            if not got or got["tensor"] != tensor:
                got = collected[layer.node] = {
                    "layer": layer,
                    "backend_name": row["name"],
                    "tensor": tensor,
                    "cosine": [],
                    "single_cosine": [],
                }
            got["cosine"].append(m["entire"]["cosine"])
            got["single_cosine"].append(m["single"]["cosine"])
    rows = layer_analysis.summarize(graph, collected.values())
    mapping = {
        "how": "by name: rknn-toolkit2 names layers by their ONNX output tensors",
        "rknn_layers": len({r["name"] for img in data["images"] for r in img["layers"] if r["type"] not in OWN_TYPES}),
        "layers": len(rows),
        "onnx_layers": len(graph.layers),
        "unmapped": unmapped,
    }
    return layer_analysis.document(
        KEY,
        "RKNN INT8 (simulator)",
        model=model,
        twin="rknn-toolkit2 float run",
        images=images,
        rows=rows,
        mapping=mapping,
        seconds=data.get("seconds_total", 0),
        notes=["sqnr_db is derived from the toolkit's cosine (it reports no signal norm)"],
    )
