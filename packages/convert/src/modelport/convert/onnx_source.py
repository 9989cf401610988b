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
