"""`convert onnx-dynamic`: the verified FP32 and INT8 ONNX models with a symbolic batch dim.

Only for batch sweeps (bench/sweep.py): the static NCHW models stay the default artifacts,
since RKNN and TensorRT want a fixed shape. The graph is unchanged except for three
things that pin batch 1: the input/output batch dim (made ``batch``), Reshape target
shapes whose first entry is 1 (made -1: MobileNetV2 flattens [1,1280,1,1] and [1,1001]),
and the static intermediate shapes in value_info (dropped; onnxruntime re-infers them).
Checked and verified as every batch twin is (batch_twin.py).
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.common.agreement import Kind
from modelport.common.context import StepContext
from modelport.common.errors import ModelportError
from modelport.convert.batch_twin import BatchTwin
from modelport.runtime.base import Runtime

from .runtime import OnnxFp32DynamicRuntime, OnnxFp32Runtime, OnnxInt8DynamicRuntime, OnnxInt8Runtime

if TYPE_CHECKING:
    import onnx

# static source -> (the runtime of its twin, accuracy floor of its kind)
MODELS: dict[str, tuple[type[Runtime], Kind]] = {
    OnnxFp32Runtime.artifacts["model"]: (OnnxFp32DynamicRuntime, "float"),
    OnnxInt8Runtime.artifacts["model"]: (OnnxInt8DynamicRuntime, "int8"),
}
BATCH_DIM = "batch"


def make_batch_dynamic(model: onnx.ModelProto) -> int:
    """Symbolic batch dim on a static batch-1 ModelProto (in place); returns how many Reshapes changed."""
    from onnx import numpy_helper

    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            raise ModelportError(f"{value.name}: batch dim is {dim.dim_value or dim.dim_param!r}, expected a static 1")
        dim.dim_param = BATCH_DIM  # clears dim_value (oneof)
    del model.graph.value_info[:]
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]])
        if shape.size and shape[0] == 1:
            if users[node.input[1]] != 1:
                raise ModelportError(f"Reshape shape {node.input[1]} is shared by several nodes; not rewriting it")
            shape = shape.copy()
            shape[0] = -1
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
            changed += 1
    return changed


class OnnxDynamic(BatchTwin):
    tool = "onnx"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
            return None
        return "onnx and onnxruntime are needed (tf-onnx env)"

    def tool_version(self) -> str:
        return f"onnx {version('onnx')}"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return [
            p
            for source, (runtime, kind) in MODELS.items()
            for p in self.twin(ctx, force, source, runtime, kind, _unpin, {"batch_dim": BATCH_DIM})
        ]


def _unpin(src: Path, out: Path) -> int:
    import onnx

    model = onnx.load(str(src))
    reshapes = make_batch_dynamic(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return reshapes


TARGET = OnnxDynamic()
