"""What the convert-side recovery backends (ONNX, NCNN, TensorRT INT8) share: ranking layers, the layers a QDQ
model quantizes, timing through the runtimes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.common.recovery import Variant
from modelport.common.results import headline_index
from modelport.runtime.base import ONNX_MODEL, Runtime
from modelport.runtime.run import prepared_images


@contextlib.contextmanager
def runtime_timers(ctx: StepContext, runtimes: Mapping[str, Runtime]) -> Iterator[dict[str, Callable[[], object]]]:
    """One batch-1 inference on the headline image per runtime (each activated once), as bench times it."""
    i = headline_index(ctx)
    arr = prepared_images(ctx)[i]
    with contextlib.ExitStack() as stack:
        timers: dict[str, Callable[[], object]] = {}
        for key, rt in runtimes.items():
            stack.enter_context(rt)
            tensor = to_tensor(arr, ctx.config.input, rt.input_layout, rt.input_dtype)
            timers[key] = cast(Callable[[], object], lambda rt=rt, tensor=tensor: rt.infer(tensor))
        yield timers


def analysed(ctx: StepContext, key: str, files: dict[str, str], variant_id: str) -> list[dict[str, Any]]:
    """A variant's per-layer analysis rows (cached as ``analysis/variants/<key>-<id>.json``)."""
    from .analyze import run

    data = run(
        ctx, key, files={r: ctx.store.path(rel) for r, rel in files.items()}, out=f"analysis/variants/{key}-{variant_id}.json"
    )
    return cast(list[dict[str, Any]], data["layers"])


def ranked(rows: list[dict[str, Any]]) -> list[str]:
    """Every analysed layer, the one that adds the most error of its own on the worst image first."""
    return [r["node"] for r in layer_analysis.worst(rows, len(rows), "own_sqnr_db_worst_image")]


def qdq_quantized(qdq: Path, graph: onnx_layers.OnnxGraph) -> set[str]:
    """The layers of ``graph`` that QDQ model ``qdq`` quantizes: a node of the layer reads an input through
    DequantizeLinear and no float weight directly (a float bias is allowed: the symmetric model for TensorRT
    keeps one). onnxruntime runs those in INT8, and TensorRT's explicit quantization takes each layer's
    precision from the same Q/DQ pairs. A node in ``nodes_to_exclude`` may still read a dequantized
    activation (the pair belongs to the tensor), but its weights stay float."""
    import onnx

    model = onnx.load(str(qdq), load_external_data=False)
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    float_weights = {t.name for t in model.graph.initializer if t.data_type in floats}
    layers = set()
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not dequantized.intersection(n.input):
            continue
        if float_weights.intersection(n.input[:2]):  # data, weight; a bias comes third
            continue
        # By name; an unnamed node by its outputs (the quantizer may have fused an activation into it).
        la = (graph.by_node(n.name) if n.name else None) or next(filter(None, map(graph.layer_of, n.output)), None)
        if la is not None:
            layers.add(la.node)
    return layers


class QdqCandidates:
    """The recovery candidates of a backend whose variants are QDQ models (``files[qdq_role]``): ONNX and
    TensorRT INT8 rank them by the variant's analysis and read what is quantized from the QDQ model."""

    ctx: StepContext
    key: str
    qdq_role: str

    @cached_property
    def graph(self) -> onnx_layers.OnnxGraph:
        return onnx_layers.load(self.ctx.store.path(ONNX_MODEL))

    def worst_layers(self, variant: Variant) -> list[str]:
        return ranked(analysed(self.ctx, self.key, {"model": variant.files[self.qdq_role]}, variant.id))

    def quantized_layers(self, variant: Variant) -> set[str]:
        return qdq_quantized(self.ctx.store.path(variant.files[self.qdq_role]), self.graph)
