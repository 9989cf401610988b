"""`convert tflite-dynamic`: the source TFLite model with its batch-1 RESHAPE targets made -1.

For batch sweeps only (the reference stays `source/model.tflite`). TFLite can resize an
input's batch (``resize_tensor_input``), but MobileNetV2's final RESHAPE has the constant
target [1, 1001], so batch N fails with "num_input_elements != num_output_elements". The
constant is patched in place (same bytes, -1 instead of 1) in the flatbuffer: no graph
rebuild, no TensorFlow. Checked and verified as every batch twin is (batch_twin.py).
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.convert.batch_twin import BatchTwin

from .runtime import TfliteDynamicRuntime, TfliteRuntime

SOURCE = TfliteRuntime.artifacts["model"]


def unpin_batch(data: bytearray) -> int:
    """Set the leading 1 of every RESHAPE's constant target shape to -1, in place; returns how many."""
    import tflite

    model = tflite.Model.GetRootAsModel(data, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    patched = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()]
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != tflite.BuiltinOperator.RESHAPE:
                continue
            if op.InputsLength() > 1:
                shape = model.Buffers(graph.Tensors(op.Inputs(1)).Buffer()).DataAsNumpy()
                if not isinstance(shape, int) and shape.size >= 4:  # a view into ``data``: writes go to the file bytes
                    target = shape.view(np.int32)
                    if target[0] == 1:
                        target[0] = -1
                        patched += 1
            options = op.BuiltinOptions()
            if options is not None:  # the old form: the target in ReshapeOptions.new_shape
                ro = tflite.ReshapeOptions()
                ro.Init(options.Bytes, options.Pos)
                new_shape = ro.NewShapeAsNumpy()
                if not isinstance(new_shape, int) and new_shape.size and new_shape[0] == 1:
                    new_shape[0] = -1
                    patched += 1
    return patched


def _unpin(src: Path, out: Path) -> int:
    data = bytearray(src.read_bytes())
    patched = unpin_batch(data)
    if patched == 0:
        raise InputError("no RESHAPE with a batch-1 target found: nothing to unpin", src)
    out.write_bytes(bytes(data))
    return patched


class TfliteDynamic(BatchTwin):
    tool = "tflite"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("tflite") is None:
            return "python module tflite (the flatbuffer schema, installed with tflite2onnx) not installed"
        return None if TfliteDynamicRuntime.unavailable_reason() is None else "no TFLite interpreter to verify with"

    def tool_version(self) -> str:
        return f"tflite {version('tflite')}"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return self.twin(ctx, force, SOURCE, TfliteDynamicRuntime, "float", _unpin, {})


TARGET = TfliteDynamic()
