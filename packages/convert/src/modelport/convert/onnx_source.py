"""An ONNX source in the form every other toolchain needs: static batch 1, NCHW, the configured opset.

RKNN and TensorRT need a static NCHW input; pnnx and onnxruntime.quantization take the
same model. An NHWC source gets a Transpose in front (the new NCHW input keeps the
source's input name); dynamic batch, height and width are fixed to 1 and [input] size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.common.context import StepContext
from modelport.common.errors import ModelportError


def _fix(dim: Any, value: int) -> None:
    dim.Clear()
    dim.dim_value = value


def name_nodes(graph: Any) -> int:
    """Give each unnamed node of ``graph`` its first output's name (unique in a valid graph, and the name
    ``onnx_layers`` already calls it by); returns how many were named. The toolchains' float-layer lists
    (onnxruntime ``nodes_to_exclude``, NNCF ``ignored_scope``) match node names: with the nodes of an older
    exporter unnamed, a layer the analysis names could never be kept in float."""
    taken = {n.name for n in graph.node if n.name}
    named = 0
    for n in graph.node:
        if not n.name and n.output and n.output[0] not in taken:
            n.name = n.output[0]
            taken.add(n.name)
            named += 1
    return named


def initializers_out_of_inputs(model: Any) -> int:
    """Drop weights listed as graph inputs (older exporters did; IR >= 4 needs no such entry): a runtime must
    treat such a weight as overridable, so onnxruntime folds no constants through it and says so for each."""
    if model.ir_version < 4:
        return 0
    g = model.graph
    weights = {t.name for t in g.initializer}
    kept = [i for i in g.input if i.name not in weights]
    dropped = len(g.input) - len(kept)
    if dropped:
        del g.input[:]
        g.input.extend(kept)
    return dropped


def static_nchw(source: Path, out: Path, ctx: StepContext, layout: str | None = None) -> list[str]:
    """Write ``out`` from ``source`` (whose input is in ``layout``, default the source's); returns what
    was changed, for the manifest. A converter's NCHW output of a dynamic TFLite source passes here too."""
    import onnx
    from onnx import helper, shape_inference, version_converter

    contract, spec = ctx.contract, ctx.config.input
    layout = layout or contract.layout
    model = onnx.load(str(source))
    g = model.graph
    (inp,) = [i for i in g.input if i.name not in {t.name for t in g.initializer}]
    h, w = spec.size
    changes = []
    dims = inp.type.tensor_type.shape.dim
    if contract.dynamic_batch:
        changes.append("batch fixed to 1")
    if contract.size is None:
        changes.append(f"height/width fixed to {h}x{w}")
    for d, v in zip(dims, (1, h, w, 3) if layout == "NHWC" else (1, 3, h, w), strict=True):
        _fix(d, v)
    if layout == "NHWC":
        inner = f"{inp.name}__nhwc"
        for n in g.node:
            for i, x in enumerate(n.input):
                if x == inp.name:
                    n.input[i] = inner
        g.node.insert(0, helper.make_node("Transpose", [inp.name], [inner], perm=[0, 2, 3, 1], name=f"{inp.name}__to_nhwc"))
        for d, v in zip(dims, (1, 3, h, w), strict=True):
            _fix(d, v)
        changes.append("NHWC input behind a Transpose: the model takes NCHW")
    for out_dim in g.output[0].type.tensor_type.shape.dim[:1]:
        _fix(out_dim, 1)
    if named := name_nodes(g):
        changes.append(f"{named} unnamed nodes named by their first output")
    if dropped := initializers_out_of_inputs(model):
        changes.append(f"{dropped} weights removed from the graph inputs")
    del g.value_info[:]  # inferred again below, for the static shapes
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < ctx.config.convert.opset:
        model = version_converter.convert_version(model, ctx.config.convert.opset)
        changes.append(f"opset {current} -> {ctx.config.convert.opset}")
    try:
        model = shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:  # onnx raises InferenceError / ValidationError with multi-line text
        raise ModelportError(f"ONNX shape inference failed on the static-shape model: {str(e).splitlines()[0]}", source) from None
    onnx.save(model, str(out))
    return changes or ["already static NCHW batch 1"]
