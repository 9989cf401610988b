"""NCNN INT8 per layer: every mapped blob extracted from the INT8 net and from its FP32 twin (pnnx's model).

Both nets run in the ncnn runtime on the same uint8 eval images; ncnn's Extractor hands out
any blob by name (light mode off), as float32. Blob names are mapped to ONNX layers by
names.py; what could not be mapped is listed in the document, never guessed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.log import progress
from modelport.common.preprocess import to_tensor
from modelport.convert.analyze import Target
from modelport.runtime.base import ONNX_MODEL as ONNX
from modelport.runtime.run import prepared_images

from .convert import BIN, PARAM
from .focus import rewrite_focus
from .format import load, read_param
from .names import Mapping, map_model
from .runtime import NcnnInt8Runtime, NcnnRuntime


def mapping(ctx: StepContext, param: Path) -> tuple[onnx_layers.OnnxGraph, Mapping]:
    import onnx

    model = onnx.load(str(ctx.store.path(ONNX)), load_external_data=False)
    rewrite_focus(model, ctx.config.input.shape("NCHW"))  # the graph pnnx read (convert.pnnx_ready): its Reorg is there
    graph = onnx_layers.from_model(model)
    return graph, map_model(read_param(param), graph, model)


def requantized_scales(param: Path, binfile: Path) -> dict[str, float]:
    """Top blob -> scale of the int8 values a requantizing conv (int8_scale_term > 100) hands on.

    ncnn extracts those blobs as the int8 numbers themselves (cast to float), not dequantized.
    """
    model = load(param, binfile)
    return {la.tops[0]: float(la.weights[-1].data[0]) for la in model.layers if la.pint(8) > 100}


def analyze(ctx: StepContext, param: Path, binfile: Path, workdir: Path | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    cfg = ctx.config
    graph, m = mapping(ctx, ctx.store.path(PARAM))
    _, m8 = mapping(ctx, param)
    # One blob per ONNX layer (its last mapped blob), present in both nets under the same name.
    by_layer: dict[str, str] = {}
    for blob in m.blobs:
        la = m.layer_of_blob(graph, blob)
        if la is not None and m8.blobs.get(blob) == m.blobs[blob]:
            if la.node not in by_layer or la.tensors.index(m.blobs[blob]) >= la.tensors.index(m.blobs[by_layer[la.node]]):
                by_layer[la.node] = blob
    blobs = list(by_layer.values())
    errors = layer_analysis.LayerErrors(graph)
    names, prepared = [p.name for p in ctx.eval_images], prepared_images(ctx)
    fp32 = NcnnRuntime(cfg, {"param": ctx.store.path(PARAM), "bin": ctx.store.path(BIN)})
    int8 = NcnnInt8Runtime(cfg, {"param": param, "bin": binfile})
    ncnn_layer = {blob: la.name for la in read_param(param).layers for blob in la.tops}
    scales = requantized_scales(param, binfile)
    with fp32, int8:
        for name, arr in progress(list(zip(names, prepared, strict=True)), "NCNN INT8: per-layer blobs"):
            tensor = to_tensor(arr, cfg.input, "NHWC", "uint8")
            ref, test = fp32.blobs(tensor, blobs), int8.blobs(tensor, blobs)
            for blob in blobs:
                la = cast(onnx_layers.OnnxLayer, m.layer_of_blob(graph, blob))  # blobs holds mapped layers only
                got = np.asarray(test[blob], np.float32) / scales.get(blob, 1.0)
                errors.add(la, ncnn_layer.get(blob, blob), name, ref[blob], got, m.blobs[blob])
    rows = errors.rows()
    mapped_layers = {la.node for la in m.layers.values()}
    mapping_doc = {
        "how": "graph walk from the input blob: op type, inputs, fused activation, conv weight count "
        "(names.py); pnnx keeps no ONNX names",
        "requantized_blobs_dequantized": len(scales),
        "ncnn_layers": len([la for la in read_param(param).layers if la.type not in ("Input", "Split")]),
        "ncnn_layers_mapped": len(m.layers),
        "unmapped": m.unmapped,
        "onnx_layers": len(graph.layers),
        "onnx_layers_mapped": len(mapped_layers),
        "layers": len(rows),
        "onnx_layers_unmapped": [f"{la.node} ({la.op})" for la in graph.layers if la.node not in mapped_layers],
    }
    return layer_analysis.document(
        "ncnn-int8",
        "NCNN INT8",
        model=ctx.store.rel(param),
        twin=PARAM,
        images=names,
        rows=rows,
        mapping=mapping_doc,
        seconds=time.monotonic() - t0,
    )


TARGET = Target("ncnn-int8", "ncnn", dict(NcnnInt8Runtime.artifacts), {**NcnnRuntime.artifacts, "onnx": ONNX}, analyze)
