"""TensorRT INT8 per layer (CUDA GPU only): two engines with every ONNX layer output marked as an output.

The QDQ model (explicit quantization: strongly typed) and ``onnx/model.onnx`` (FP32) are parsed;
each network tensor whose name is an ONNX layer's output is marked as a network output, so both
engines hand those tensors back under the same names. Marking a tensor stops TensorRT fusing
across it, so the numbers describe a less fused engine than the benchmarked one (said in the
document). Without a GPU ``cuda.require`` raises HardwareMissing before tensorrt is imported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import progress
from modelport.common.preprocess import to_tensor
from modelport.convert.analyze import Target
from modelport.runtime.base import ONNX_MODEL as FP32
from modelport.runtime.run import prepared_images

from . import cuda
from .qdq import QDQ


def build_marked(trt: Any, ctx: StepContext, onnx_path: Path, wanted: set[str], strongly_typed: bool) -> bytes:
    from .runtime import trt_logger

    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse it: {errors}", onnx_path)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t.name in wanted and not t.is_network_output:
                network.mark_output(t)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ctx.config.tensorrt.workspace_mb << 20)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelportError(f"TensorRT could not build the marked engine: {logger.last_error or 'see the log'}", onnx_path)
    return bytes(plan)


def run_marked(trt: Any, drv: Any, plan: bytes, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every output tensor of the engine for each input (batch 1, NCHW float32)."""
    from .runtime import trt_logger

    engine = trt.Runtime(trt_logger()).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    stream = drv.Stream()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    host, dev = {}, {}
    for n in names:
        host[n] = drv.pagelocked_empty(tuple(context.get_tensor_shape(n)), np.dtype(trt.nptype(engine.get_tensor_dtype(n))))
        dev[n] = drv.mem_alloc(max(host[n].nbytes, 1))
        context.set_tensor_address(n, int(dev[n]))
    out = []
    for tensor in tensors:
        np.copyto(host[inp], tensor, casting="same_kind")
        drv.memcpy_htod_async(dev[inp], host[inp], stream)
        if not context.execute_async_v3(stream.handle):
            raise ModelportError("TensorRT execute_async_v3 failed on the marked engine")
        for n in names:
            if n != inp:
                drv.memcpy_dtoh_async(host[n], dev[n], stream)
        stream.synchronize()
        out.append({n: host[n].astype(np.float32).copy() for n in names if n != inp})
    return out


def analyze(ctx: StepContext, model: Path, workdir: Path | None = None) -> dict[str, Any]:
    cuda.require(ctx.config.tensorrt.device)
    import pycuda.driver as drv

    import tensorrt as trt

    t0 = time.monotonic()
    fp32 = ctx.store.path(FP32)
    graph = onnx_layers.load(fp32)
    wanted = {t for la in graph.layers for t in la.tensors}
    names = [p.name for p in ctx.eval_images]
    tensors = [to_tensor(a, ctx.config.input, "NCHW", "float32") for a in prepared_images(ctx)]
    drv.init()
    gpu = drv.Device(ctx.config.tensorrt.device).retain_primary_context()
    gpu.push()
    try:
        ref = run_marked(trt, drv, build_marked(trt, ctx, fp32, wanted, False), tensors)
        test = run_marked(trt, drv, build_marked(trt, ctx, model, wanted, True), tensors)
    finally:
        gpu.pop()
    errors = layer_analysis.LayerErrors(graph)
    for name, r, q in progress(list(zip(names, ref, test, strict=True)), "TensorRT INT8: per-layer tensors"):
        for tensor in sorted(set(r) & set(q)):
            if (layer := graph.layer_of(tensor)) is not None:
                errors.add(layer, tensor, name, r[tensor], q[tensor], tensor)
    rows = errors.rows()
    mapping = {
        "how": "TensorRT keeps the ONNX tensor names: every layer output marked in both engines",
        "layers": len(rows),
        "onnx_layers": len(graph.layers),
    }
    return layer_analysis.document(
        "tensorrt-int8",
        "TensorRT INT8",
        model=ctx.store.rel(model),
        twin=FP32,
        images=names,
        rows=rows,
        mapping=mapping,
        seconds=time.monotonic() - t0,
        notes=["marked outputs stop TensorRT fusing across them: a less fused engine than the benchmarked one"],
    )


TARGET = Target("tensorrt-int8", "tensorrt", {"model": QDQ.output}, {"onnx": FP32}, analyze)
