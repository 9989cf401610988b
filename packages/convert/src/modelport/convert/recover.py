"""What the convert-side recovery backends (ONNX, NCNN, OpenVINO, MNN, TensorRT INT8) share: the INT8 target
that runs a search space (``Searched``), ranking layers, the layers a QDQ model quantizes."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, cast

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.recovery import Variant
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.knobs import Knobs

from .analyze import run as analyze
from .base import Converter
from .qdq import float_run


class Searched(Converter):
    """The INT8 conversion target of a backend with a search space (``knobs``): the toolchain check and
    version are its ``converter``'s (the one that makes each variant), and converting runs the search,
    which keeps the configured variant when it meets the floors. ``searches(ctx)`` False: the
    converter's own configured build, no search."""

    def __init__(self, converter: Converter, knobs: type[Knobs], searches: Callable[[StepContext], bool] | None = None):
        self.converter, self.knobs, self.searches = converter, knobs, searches

    def unavailable_reason(self) -> str | None:
        return self.converter.unavailable_reason()

    def tool_version(self) -> str:
        return self.converter.tool_version()

    def require(self, ctx: StepContext) -> None:
        self.converter.require(ctx)

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        if self.searches is not None and not self.searches(ctx):
            return self.converter.convert(ctx, force)
        return self.knobs(ctx, force).run()


def analysed(ctx: StepContext, key: str, files: dict[str, str], variant_id: str) -> list[dict[str, Any]]:
    """A variant's per-layer analysis rows (cached as ``analysis/variants/<key>-<id>.json``)."""
    data = analyze(
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


class QdqKnobs(Knobs):
    """The search space of a backend whose variants are QDQ models (``files[qdq_role]``): ONNX and TensorRT
    INT8 rank the candidates by the variant's analysis and read what is quantized from the QDQ model."""

    qdq_role: ClassVar[str]

    @cached_property
    def graph(self) -> onnx_layers.OnnxGraph:
        return onnx_layers.load(self.ctx.store.path(ONNX_MODEL))

    def worst_layers(self, variant: Variant) -> list[str]:
        return ranked(analysed(self.ctx, self.key, {"model": variant.files[self.qdq_role]}, variant.id))

    def quantized_layers(self, variant: Variant) -> set[str]:
        return qdq_quantized(self.ctx.store.path(variant.files[self.qdq_role]), self.graph)

    def in_float(self, float_layers: list[str]) -> list[str]:
        return float_run(self.graph, float_layers)  # the consumers too, as excluded_nodes keeps them
