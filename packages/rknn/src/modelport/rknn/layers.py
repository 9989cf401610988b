"""RKNN INT8 per layer in the common form: ``rknn/accuracy/analysis.json`` -> ``analysis/rknn-int8.json``.

rknn-toolkit2 names its layers by the ONNX tensors they output (``Relu6__5:0``; a fused conv is
listed with no numbers and its activation carries them), so the mapping is by name: a tensor of
``onnx/model.onnx`` or a node's name. Its own layers (``exDataConvert`` casts, ``exSoftmax13`` ->
``Reshape_sw``) have no ONNX counterpart and are listed as unmapped. Cosine is the toolkit's
"entire" cosine against its float run; SQNR is derived from it (the toolkit reports no signal
norm); own SQNR from its "single" cosine (the layer alone, on float inputs).
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.log import step

from . import analysis
from .convert import MODELS, ONNX

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


def run(ctx: StepContext, force: bool = False, verbose: bool = False) -> dict[str, Any]:
    """accuracy_analysis (cached) -> analysis/rknn-int8.json."""
    analysis.run(ctx, force=force, verbose=verbose)
    store, out = ctx.store, layer_analysis.analysis_path(KEY)
    with store.produce(
        out,
        inputs={"analysis": store.path(analysis.ANALYSIS), "onnx": store.path(ONNX)},
        tool="modelport analyze rknn-int8",
        tool_version="1",
        options={},
        force=force or ctx.force,
    ) as job:
        if not job.cached:
            step(f"analyze {KEY}: {analysis.ANALYSIS} -> {out}")
            t0 = time.monotonic()
            doc = document(ctx, json.loads(store.path(analysis.ANALYSIS).read_text()), onnx_layers.load(store.path(ONNX)))
            doc["seconds"] = round(doc["seconds"] + time.monotonic() - t0, 1)
            job.tmp().write_text(json.dumps(doc, indent=1) + "\n")
    return cast(dict[str, Any], json.loads(store.path(out).read_text()))
