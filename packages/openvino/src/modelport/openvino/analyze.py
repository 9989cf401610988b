"""`analyze openvino-int8`: the NNCF INT8 IR against the FP32 IR, per ONNX layer -> analysis/openvino-int8.json.

Named by openvino-int8's descriptor (``analysis``). Both IRs come from
onnx/model.onnx through ``ov.convert_model``, which keeps the ONNX tensor names on the ops
that produce them; NNCF inserts its FakeQuantize ops after those, unnamed. So every tensor of
onnx/model.onnx that OpenVINO still has becomes an extra output of both models, and the two
are compared by name. Compiled with the runtime's properties (the f32 precision hint): the
CPU plugin's own INT8 kernels, less the fusions an extra output prevents.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.log import progress
from modelport.common.preprocess import to_tensor
from modelport.convert.analyze import Target
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.run import prepared_images

from .runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime

ONNX = ONNX_MODEL


def exposed(
    core: Any, xml: Path, graph: onnx_layers.OnnxGraph, properties: Mapping[str, object]
) -> tuple[Any, dict[str, tuple[int, str]]]:
    """``xml`` compiled with every output whose tensor name is a layer tensor of ``graph`` as an extra
    output; returns (compiled model, {onnx tensor name: (output index, op friendly name)})."""
    model = core.read_model(str(xml))
    ports = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            names = [n for n in out.get_names() if graph.layer_of(n) is not None]
            if names and op.get_type_name() != "Result":
                ports[names[0]] = (out, op.get_friendly_name())
    model.add_outputs([p for p, _ in ports.values()])
    compiled = core.compile_model(model, "CPU", properties)
    index = {}
    for i, o in enumerate(compiled.outputs):
        for n in o.get_names():
            if n in ports:
                index[n] = (i, ports[n][1])
    return compiled, index


def analyze(ctx: StepContext, model: Path, weights: Path, workdir: Path) -> dict[str, Any]:
    """The analysis document of INT8 IR ``model`` against openvino/model.xml on the eval images."""
    import openvino as ov

    t0 = time.monotonic()
    cfg, store = ctx.config, ctx.store
    graph = onnx_layers.load(store.path(ONNX))
    errors = layer_analysis.LayerErrors(graph)
    core = ov.Core()
    fp32_rt = OpenvinoFp32Runtime.from_store(store, cfg)
    props = fp32_rt.properties()
    float_c, float_ix = exposed(core, fp32_rt.files["model"], graph, props)
    int8_c, int8_ix = exposed(core, model, graph, props)
    shared = [t for t in float_ix if t in int8_ix]
    float_r, int8_r = float_c.create_infer_request(), int8_c.create_infer_request()
    names, prepared = [p.name for p in ctx.eval_images], prepared_images(ctx)
    for name, arr in progress(list(zip(names, prepared, strict=True)), "OpenVINO INT8: per-layer activations"):
        x = to_tensor(arr, cfg.input, OpenvinoInt8Runtime.input_layout, OpenvinoInt8Runtime.input_dtype)
        float_r.infer({0: x})
        int8_r.infer({0: x})
        for t in shared:
            ref = float_r.get_output_tensor(float_ix[t][0]).data
            got = int8_r.get_output_tensor(int8_ix[t][0]).data
            layer = graph.layer_of(t)
            if layer is not None:  # exposed() only names tensors of the graph
                errors.add(layer, int8_ix[t][1], name, ref, got, t)
    rows = errors.rows()
    mapping = {
        "how": "ov.convert_model keeps the tensor names of onnx/model.onnx in both IRs; compared by name",
        "tensors_matched": len(shared),
        "fp32_only": sorted(set(float_ix) - set(int8_ix)),
        "int8_only": sorted(set(int8_ix) - set(float_ix)),
        "layers": len(rows),
        "onnx_layers": len(graph.layers),
    }
    return layer_analysis.document(
        "openvino-int8",
        "OpenVINO INT8",
        model=store.rel(model),
        twin=OpenvinoFp32Runtime.artifacts["model"],
        images=names,
        rows=rows,
        mapping=mapping,
        seconds=time.monotonic() - t0,
    )


TARGET = Target(
    "openvino-int8", "openvino", dict(OpenvinoInt8Runtime.artifacts), {**OpenvinoFp32Runtime.artifacts, "onnx": ONNX}, analyze
)
