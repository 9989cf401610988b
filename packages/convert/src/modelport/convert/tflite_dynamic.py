"""`convert tflite-dynamic`: the source TFLite model with its batch-1 RESHAPE targets made -1.

For batch sweeps only (the reference stays `source/model.tflite`). TFLite can resize an
input's batch (``resize_tensor_input``), but MobileNetV2's final RESHAPE has the constant
target [1, 1001], so batch N fails with "num_input_elements != num_output_elements". The
constant is patched in place (same bytes, -1 instead of 1) in the flatbuffer: no graph
rebuild, no TensorFlow. Verified like every converter: batch 1 against the reference on
every eval image, then all eval images as one batch must give the per-image outputs.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version

import numpy as np

from modelport.common.context import StepContext
from modelport.common.errors import InputError, ToolchainMissing
from modelport.common.log import console, step
from modelport.common.reference import REFERENCE
from modelport.runtime.tflite import TfliteDynamicRuntime, TfliteRuntime

from .onnx_dynamic import check_batch_consistency
from .verify import verify

SOURCE, OUTPUT = TfliteRuntime.artifacts["model"], TfliteDynamicRuntime.artifacts["model"]


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("tflite") is None:
        return "python module tflite (the flatbuffer schema, installed with tflite2onnx) not installed"
    return None if TfliteDynamicRuntime.unavailable_reason() is None else "no TFLite interpreter to verify with"


def tool_version() -> str:
    return f"tflite {version('tflite')}"


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


def run(ctx: StepContext, force: bool):
    reason = unavailable_reason()
    if reason:
        raise ToolchainMissing(reason)
    store = ctx.store
    src = store.path(SOURCE)
    with store.produce(
        OUTPUT,
        inputs={"tflite": src, "reference": store.path(REFERENCE)},
        tool="tflite",
        tool_version=tool_version(),
        options={},
        force=force,
    ) as job:
        if job.cached:
            return [job.path]
        step(f"{SOURCE} -> {OUTPUT}: RESHAPE targets without the batch-1 pin")
        data = bytearray(src.read_bytes())
        patched = unpin_batch(data)
        if patched == 0:
            raise InputError("no RESHAPE with a batch-1 target found: nothing to unpin", src)
        job.tmp().write_bytes(bytes(data))
        agreement = verify(ctx, TfliteDynamicRuntime(ctx.config, {"model": job.tmp()}), "float", store.path(OUTPUT))
        diff = check_batch_consistency(ctx, TfliteDynamicRuntime(ctx.config, {"model": job.tmp()}), "float", store.path(OUTPUT))
        console.print(
            f"   {len(ctx.eval_images)} images as one batch = batch-1 outputs (max abs diff {diff:.1e}); "
            f"{patched} RESHAPE target(s) unpinned"
        )
        job.record(
            reshapes_rewritten=patched,
            batch_vs_single_max_abs_diff=diff,
            agreement=agreement.model_dump(exclude={"per_image"}) if agreement else None,
        )
    return [job.path]
