"""ONNX INT8 per layer: onnxruntime.quantization.qdq_loss_debug on the QDQ model and ``onnx/model.onnx``.

``modify_model_output_intermediate_tensors`` makes every float tensor of both models an
output; ``create_activation_matching`` pairs the QDQ model's dequantized activations with
the float model's by tensor name (the quantizer keeps the float model's names). Sessions
run with graph optimizations off, as ``collect_activations`` runs them: the QDQ arithmetic
onnxruntime's int8 kernels reproduce. One image at a time, so memory stays at one image's
activations (``collect_activations`` would keep every image's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.log import progress
from modelport.common.preprocess import to_tensor
from modelport.convert.analyze import Target
from modelport.runtime.base import ONNX_MODEL as FP32
from modelport.runtime.run import prepared_images

from .runtime import OnnxInt8Runtime


def sessions(float_model: Path, qdq_model: Path, workdir: Path) -> list[Any]:
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    out = []
    for src, name in ((float_model, "float"), (qdq_model, "qdq")):
        augmented = workdir / f"{name}.augmented.onnx"
        modify_model_output_intermediate_tensors(str(src), str(augmented))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        out.append(ort.InferenceSession(str(augmented), so, providers=["CPUExecutionProvider"]))
    return out


def activations(session: Any, feed: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """What ``collect_activations`` returns, for one input."""
    from onnxruntime.quantization import qdq_loss_debug

    suffix = qdq_loss_debug._TENSOR_SAVE_POSTFIX  # the name suffix of the outputs it added
    names = [o.name for o in session.get_outputs()]
    return {n[: -len(suffix)]: [v] for n, v in zip(names, session.run(None, feed), strict=True) if n.endswith(suffix)}


def analyze(ctx: StepContext, model: Path, workdir: Path) -> dict[str, Any]:
    """The analysis document of QDQ ``model`` against ``onnx/model.onnx`` on the eval images."""
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
    )

    t0 = time.monotonic()
    fp32 = ctx.store.path(FP32)
    graph = onnx_layers.load(fp32)
    errors = layer_analysis.LayerErrors(graph)
    float_s, qdq_s = sessions(fp32, model, workdir)
    input_name = float_s.get_inputs()[0].name
    names, prepared = [p.name for p in ctx.eval_images], prepared_images(ctx)
    matched, unmatched = set(), set()
    for name, arr in progress(list(zip(names, prepared, strict=True)), "ONNX INT8: per-layer activations"):
        feed = {input_name: to_tensor(arr, ctx.config.input, "NCHW", "float32")}
        match = create_activation_matching(activations(qdq_s, feed), activations(float_s, feed))
        for tensor, m in match.items():
            layer = graph.layer_of(tensor)
            if "float" not in m or layer is None:
                unmatched.add(tensor)
                continue
            matched.add(tensor)
            errors.add(layer, tensor, name, m["float"][0], m["post_qdq"][0], tensor)
    weights = compute_weight_error(create_weight_matching(str(fp32), str(model)))
    rows = errors.rows()
    mapping = {
        "how": "qdq_loss_debug: tensor names of the QDQ model are those of onnx/model.onnx",
        "activations_matched": len(matched),
        "activations_unmatched": sorted(unmatched),
        "layers": len(rows),
        "onnx_layers": len(graph.layers),
        "weights_matched": len(weights),
        "weight_sqnr_db_min": round(min(weights.values()), 2) if weights else None,
    }
    return layer_analysis.document(
        "onnx-int8",
        "ONNX INT8",
        model=ctx.store.rel(model),
        twin=FP32,
        images=names,
        rows=rows,
        mapping=mapping,
        seconds=time.monotonic() - t0,
    )


TARGET = Target("onnx-int8", "onnxruntime", dict(OnnxInt8Runtime.artifacts), {"onnx": FP32}, analyze)
