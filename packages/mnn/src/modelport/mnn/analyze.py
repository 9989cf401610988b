"""`analyze mnn-int8`: MNN's INT8 model against its FP32 twin (mnn/model.mnn), per ONNX layer -> analysis/mnn-int8.json.

Named by mnn-int8's descriptor (``analysis``). MNN hands out any tensor of a model by name:
``MNN.nn.load_module_from_file(model, inputs, outputs)`` takes intermediate tensor names as outputs,
and gives the INT8 model's as float (dequantized by MNN's own Int8ToFloat). Both models keep the
tensor names MNNConvert read from onnx/model.onnx, except where ``nn.compress.train_quant`` rebuilt
a quantized conv under a generated name (``ConvInt8<n>``, ``DepthwiseConvInt8<n>``): those are paired
with the FP32 model's convs by their order in the model file, only when both models have the same
convs with the same output shapes (otherwise they are listed as unmatched, never guessed). A conv with
its fused activation may carry the conv's tensor name in one model and the activation's in the other:
both are tensors of the same layer (onnx_layers), so the layer's last tensor each model has is compared.
Extra outputs can keep MNN from fusing what follows them: the INT8 kernels are MNN's, the fusions are
those an extra output allows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.log import progress
from modelport.common.preprocess import to_tensor
from modelport.convert.analyze import Target
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.run import prepared_images

from .runtime import MnnFp32Runtime, MnnInt8Runtime, threads

ONNX = ONNX_MODEL


CONVS = ("Convolution", "ConvolutionDepthwise")


@dataclass
class Tensor:
    name: str
    op: str
    shape: list[int]


def model_tensors(path: Path) -> tuple[str, list[Tensor]]:
    """(input name, every tensor in the model file's order) of the MNN model at ``path``."""
    import MNN

    tensors = [Tensor(v.name, v.op_type, list(v.shape)) for v in MNN.expr.load_as_list(str(path))]
    inputs = [t.name for t in tensors if t.op == "Input"]
    if len(inputs) != 1:
        raise InputError(f"the MNN analysis runs single-input models, this one has {len(inputs)} inputs", path)
    return inputs[0], tensors


def onnx_names(fp32: list[Tensor], int8: list[Tensor], graph: onnx_layers.OnnxGraph) -> dict[str, str]:
    """INT8 tensor name -> the ONNX tensor it is: its own name, or for a conv train_quant renamed, the name of
    the FP32 conv in the same place (convs paired in file order when both models have the same conv shapes)."""
    names = {t.name: t.name for t in int8}
    f, q = [t for t in fp32 if t.op in CONVS], [t for t in int8 if t.op in CONVS]
    if len(f) == len(q) and all(a.shape == b.shape for a, b in zip(f, q, strict=True)):
        names |= {b.name: a.name for a, b in zip(f, q, strict=True) if graph.layer_of(b.name) is None}
    return names


def layer_tensors(names: Mapping[str, str], graph: onnx_layers.OnnxGraph) -> dict[str, str]:
    """ONNX layer (head node) -> the model tensor holding the last of its tensors; ``names``: model tensor ->
    the ONNX tensor it is."""
    found: dict[str, str] = {}
    for name, onnx_name in names.items():
        la = graph.layer_of(onnx_name)
        if la is not None and (la.node not in found or la.tensors.index(onnx_name) > la.tensors.index(names[found[la.node]])):
            found[la.node] = name
    return found


class Exposed:
    """An MNN model run with ``outputs`` (tensor names) as its outputs, as NCHW float32 arrays."""

    def __init__(self, path: Path, input_name: str, outputs: list[str], thread_num: int):
        import MNN

        self.F, self.outputs = MNN.expr, outputs
        self.module = MNN.nn.load_module_from_file(str(path), [input_name], outputs, thread_num=thread_num)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        F = self.F
        x = np.ascontiguousarray(tensor, np.float32)
        ys = self.module.forward([F.const(x.ravel().tolist(), list(x.shape), F.NCHW, F.float)])
        out = {}
        for name, y in zip(self.outputs, ys, strict=True):
            if y.data_format == F.NC4HW4:  # MNN's packed layout: back to the plain one both models are read in
                y = F.convert(y, F.NCHW)
            out[name] = np.array(y.read(), np.float32)
        return out


def analyze(ctx: StepContext, model: Path, workdir: Path | None = None) -> dict[str, Any]:
    """The analysis document of INT8 MNN ``model`` against mnn/model.mnn on the eval images."""
    t0 = time.monotonic()
    cfg, store = ctx.config, ctx.store
    graph = onnx_layers.load(store.path(ONNX))
    fp32_path = store.path(MnnFp32Runtime.artifacts["model"])
    float_in, float_tensors = model_tensors(fp32_path)
    int8_in, int8_tensors = model_tensors(model)
    int8_names = onnx_names(float_tensors, int8_tensors, graph)
    float_of = layer_tensors({t.name: t.name for t in float_tensors}, graph)
    int8_of = layer_tensors(int8_names, graph)
    shared = [node for node in float_of if node in int8_of]
    n = threads(cfg)
    fp32 = Exposed(fp32_path, float_in, [float_of[node] for node in shared], n)
    int8 = Exposed(model, int8_in, [int8_of[node] for node in shared], n)
    errors = layer_analysis.LayerErrors(graph)
    names, prepared = [p.name for p in ctx.eval_images], prepared_images(ctx)
    for name, arr in progress(list(zip(names, prepared, strict=True)), "MNN INT8: per-layer tensors"):
        x = to_tensor(arr, cfg.input, MnnInt8Runtime.input_layout, MnnInt8Runtime.input_dtype)
        ref, got = fp32.run(x), int8.run(x)
        for node in shared:
            la = graph.by_node(node)
            if la is not None:  # layer_tensors() keys are layers of the graph
                errors.add(la, int8_of[node], name, ref[float_of[node]], got[int8_of[node]], float_of[node])
    rows = errors.rows()
    mapping = {
        "how": "MNNConvert keeps the tensor names of onnx/model.onnx; convs train_quant renamed are paired with the "
        "FP32 model's in file order; each layer's last tensor read through nn.load_module_from_file as an output",
        "tensors_matched": len(shared),
        "renamed_by_train_quant": sum(1 for n in shared if int8_names[int8_of[n]] != int8_of[n]),
        # a conv and its fused activation: the FP32 model's tensor -> the INT8 model's (both of the one layer)
        "other_tensor_of_the_layer": sorted(
            f"{float_of[n]} -> {int8_names[int8_of[n]]}" for n in shared if int8_names[int8_of[n]] != float_of[n]
        ),
        "fp32_only": sorted(float_of[n] for n in set(float_of) - set(int8_of)),
        "int8_only": sorted(int8_of[n] for n in set(int8_of) - set(float_of)),
        "layers": len(rows),
        "onnx_layers": len(graph.layers),
    }
    return layer_analysis.document(
        "mnn-int8",
        "MNN INT8",
        model=store.rel(model),
        twin=MnnFp32Runtime.artifacts["model"],
        images=names,
        rows=rows,
        mapping=mapping,
        seconds=time.monotonic() - t0,
    )


TARGET = Target("mnn-int8", "MNN", dict(MnnInt8Runtime.artifacts), {**MnnFp32Runtime.artifacts, "onnx": ONNX}, analyze)
