"""`convert onnx-dynamic`: the verified FP32 and INT8 ONNX models with a symbolic batch dim.

Only for batch sweeps (bench/sweep.py): the static NCHW models stay the default artifacts,
since RKNN and TensorRT want a fixed shape. The graph is unchanged except for three
things that pin batch 1: the input/output batch dim (made ``batch``), Reshape target
shapes whose first entry is 1 (made -1: MobileNetV2 flattens [1,1280,1,1] and [1,1001]),
and the static intermediate shapes in value_info (dropped; onnxruntime re-infers them).
Verified like every converter: batch 1 against the reference on every eval image, and
then all eval images as one batch must give the per-image outputs.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version

import numpy as np

from modelport.common.agreement import Kind
from modelport.common.context import StepContext
from modelport.common.errors import ModelportError, ToolchainMissing
from modelport.common.log import console, step
from modelport.common.preprocess import to_tensor
from modelport.common.reference import REFERENCE
from modelport.runtime.base import Runtime
from modelport.runtime.onnxruntime import OnnxFp32DynamicRuntime, OnnxFp32Runtime, OnnxInt8DynamicRuntime, OnnxInt8Runtime
from modelport.runtime.run import prepared_images

from .verify import verify

# static source -> (dynamic output, runtime that runs it, accuracy floor of its kind)
MODELS: dict[str, tuple[str, type[Runtime], Kind]] = {
    OnnxFp32Runtime.artifacts["model"]: (OnnxFp32DynamicRuntime.artifacts["model"], OnnxFp32DynamicRuntime, "float"),
    OnnxInt8Runtime.artifacts["model"]: (OnnxInt8DynamicRuntime.artifacts["model"], OnnxInt8DynamicRuntime, "int8"),
}
BATCH_DIM = "batch"


def unavailable_reason() -> str | None:
    return (
        None
        if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime")
        else "onnx and onnxruntime are needed (tf-onnx env)"
    )


def tool_version() -> str:
    return f"onnx {version('onnx')}"


def make_batch_dynamic(model):
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


def check_batch_consistency(ctx: StepContext, runtime, kind: str, what) -> float:
    """All eval images as one batch must give what each gives alone (no cross-talk, no batch-1 pin)."""
    spec = ctx.config.input
    tensors = [to_tensor(a, spec, runtime.input_layout, runtime.input_dtype) for a in prepared_images(ctx)]
    with runtime:
        single = np.concatenate([runtime.infer(t) for t in tensors])
        runtime.set_batch(len(tensors))
        batched = runtime.infer(np.concatenate(tensors))
    diff = float(np.max(np.abs(batched - single)))
    # INT8 kernels may pick other blockings per batch size: allow float rounding, never a different answer.
    tolerance = 1e-4 if kind == "float" else 1e-3
    if batched.shape != single.shape or diff > tolerance:
        raise ModelportError(f"batch of {len(tensors)} differs from batch-1 outputs (max abs diff {diff:.2e})", what)
    return diff


def run(ctx: StepContext, force: bool):
    reason = unavailable_reason()
    if reason:
        raise ToolchainMissing(reason)
    import onnx

    store, made = ctx.store, []
    for source, (output, runtime_cls, kind) in MODELS.items():
        src = store.path(source)
        with store.produce(
            output,
            inputs={"onnx": src, "reference": store.path(REFERENCE)},
            tool="onnx",
            tool_version=tool_version(),
            options={"batch_dim": BATCH_DIM},
            force=force,
        ) as job:
            if job.cached:
                made.append(job.path)
                continue
            step(f"{source} -> {output}: symbolic batch dim")
            model = onnx.load(str(src))
            reshapes = make_batch_dynamic(model)
            onnx.checker.check_model(model)
            onnx.save(model, str(job.tmp()))
            rt = runtime_cls(ctx.config, {"model": job.tmp()})
            agreement = verify(ctx, rt, kind, store.path(output))
            diff = check_batch_consistency(ctx, runtime_cls(ctx.config, {"model": job.tmp()}), kind, store.path(output))
            console.print(
                f"   {len(ctx.eval_images)} images as one batch = batch-1 outputs (max abs diff {diff:.1e}); "
                f"{reshapes} Reshape shape(s) made batch-agnostic"
            )
            job.record(
                reshapes_rewritten=reshapes,
                batch_vs_single_max_abs_diff=diff,
                agreement=agreement.model_dump(exclude={"per_image"}) if agreement else None,
            )
        made.append(job.path)
    return made
