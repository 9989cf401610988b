"""What an ONNX model asks of a TensorRT build, read before TensorRT is involved.

- the single input: name, shape (dynamic dims as -1), layout;
- the optimisation profile for dynamic dims (batch 1..max_batch, the rest from [input]);
- whether a QDQ model is one TensorRT's explicit quantization accepts. TensorRT
  supports symmetric signed INT8 only (zero point 0); onnxruntime's default U8S8
  QDQ (uint8 activations with zero points) is refused by its ONNX parser
  ("Non-zero zero point is not supported"), and a uint8 tensor read as int8 would
  clip at half its range. Knowing this up front lets the INT8 target fall back to
  calibration instead of failing mid-build.

Needs only the ``onnx`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelport.common.errors import InputError
from modelport.common.onnx_safety import check_onnx
from modelport.common.preprocess import InputSpec, Layout

if TYPE_CHECKING:
    import onnx

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: Shape  # -1 where the model leaves a dimension open

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)

    @property
    def layout(self) -> Layout:
        return layout_of(self.shape)


def load(path: Path) -> onnx.ModelProto:
    import onnx

    check_onnx(path)  # parseable, and no external data outside the model folder
    try:
        # Weights are not needed to read the graph's structure and QDQ zero points
        # (zero points are small initializers stored inline).
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError/ValueError/OSError variants
        raise InputError(f"not a readable ONNX model: {e}", path) from None


def model_input(model: onnx.ModelProto, path: Path | None = None) -> ModelInput:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"expected one input, the model has {len(inputs)}: {[i.name for i in inputs]}", path)
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims)
    if len(shape) != 4:
        raise InputError(f"input {inputs[0].name} has rank {len(shape)}; an image classifier takes 4", path)
    return ModelInput(inputs[0].name, shape)


def layout_of(shape: Sequence[int]) -> Layout:
    """NCHW when channels (3) sit at axis 1, NHWC when last; ambiguous shapes follow NCHW."""
    if shape[1] == 3 or shape[1] < 0 and shape[3] != 3:
        return "NCHW"
    if shape[3] == 3:
        return "NHWC"
    raise InputError(f"cannot tell the layout of input shape {tuple(shape)} (no axis of 3 channels)")


def static_shape(shape: Sequence[int], spec: InputSpec, batch: int = 1) -> Shape:
    """``shape`` with open dimensions filled: batch, then height/width/channels from [input]."""
    layout = layout_of(shape)
    want = list(spec.shape(layout))
    want[0] = batch
    out = []
    for axis, d in enumerate(shape):
        if d >= 0 and axis > 0 and d != want[axis]:
            raise InputError(f"model input {tuple(shape)} does not match [input] ({layout} {tuple(want)})")
        out.append(d if d >= 0 else want[axis])
    return tuple(out)


def profile_shapes(shape: Sequence[int], spec: InputSpec, max_batch: int = 1) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) for an optimisation profile: batch 1 / 1 / max_batch, fixed spatial size."""
    if shape[0] >= 0:
        fixed = static_shape(shape, spec, shape[0])
        return fixed, fixed, fixed
    return static_shape(shape, spec, 1), static_shape(shape, spec, 1), static_shape(shape, spec, max_batch)


# -- QDQ ---------------------------------------------------------------------------------

_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def qdq_nodes(model: onnx.ModelProto) -> int:
    return sum(n.op_type in _QDQ_OPS for n in model.graph.node)


def qdq_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT's explicit quantization would refuse this QDQ model ([] = it accepts it)."""
    from onnx import TensorProto, numpy_helper

    consts = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    bad: dict[str, list[str]] = {}
    for n in model.graph.node:
        if n.op_type not in _QDQ_OPS:
            continue
        label = n.name or n.output[0]
        if len(n.input) < 3 or not n.input[2]:
            # No zero point: by the ONNX spec that means uint8, zero 0.
            bad.setdefault("uint8 (no zero point given)", []).append(label)
            continue
        zp = consts.get(n.input[2])
        if zp is None:
            bad.setdefault("zero point computed at run time", []).append(label)
            continue
        values = numpy_helper.to_array(zp)
        if zp.data_type != TensorProto.INT8:
            bad.setdefault(f"{TensorProto.DataType.Name(zp.data_type).lower()} zero point", []).append(label)
        elif np.any(values != 0):
            bad.setdefault("non-zero zero point", []).append(label)
    return [f"{len(nodes)} node(s) with {why} (e.g. {nodes[0]})" for why, nodes in bad.items()]
