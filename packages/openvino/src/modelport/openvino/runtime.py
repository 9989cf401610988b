"""OpenVINO CPU runtimes for the IR that `convert openvino-fp32` / `openvino-int8` write.

compile_model's properties come from [openvino]: INFERENCE_PRECISION_HINT f32 by default (on
Xeons with AMX the CPU plugin's own default is bf16: cosine min 0.9986 vs the reference, f32
gives 1.0000; the INT8 model gets the same hint, so the layers NNCF left in float run in f32).
No batch twin: the IR of a tflite2onnx model bakes batch 1 into its Reshape constants, so
reshaping it fails; the depth sweeps run N sequential batch-1 requests and say so (mode loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.runtime.base import LayerTime, Runtime

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph


def threads(config: Config) -> int:
    """[openvino] threads when set, else [tflite] threads (the reference runtime's, so the rows
    compare at one thread count)."""
    return config.openvino.threads or config.tflite.threads


class OpenvinoRuntime(Runtime):
    backend = "openvino"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("openvino",)
    profiler = "OpenVINO PERF_COUNT (InferRequest.get_profiling_info, real_time)"

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version("openvino")

    def properties(self) -> dict[str, object]:
        c = self.config.openvino
        props: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": c.inference_precision,
            "INFERENCE_NUM_THREADS": threads(self.config),
            "PERFORMANCE_HINT": c.performance_hint.upper(),
        }
        if c.num_streams is not None:
            props["NUM_STREAMS"] = c.num_streams
        if c.cpu_pinning is not None:
            props["ENABLE_CPU_PINNING"] = c.cpu_pinning
        return props

    def settings(self) -> dict[str, object]:
        return {"device": "CPU"} | self.properties()

    def activate_impl(self) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(self.files["model"]), str(self.files["weights"]))
        except Exception as e:  # OpenVINO raises RuntimeError with its own text
            raise self.model_error(e) from None
        if len(model.inputs) != 1 or not model.outputs:
            raise InputError(
                f"{self.display} expects one input and its outputs, the model has {len(model.inputs)} and {len(model.outputs)}",
                self.files["model"],
            )
        shape = list(model.inputs[0].get_partial_shape().to_shape()) if model.inputs[0].get_partial_shape().is_static else None
        expected = list(self.input_shape())
        if shape is not None and shape != expected:
            raise InputError(
                f"model input {shape} does not match the config ({self.input_layout} {expected})", self.files["model"]
            )
        self.compiled = core.compile_model(model, "CPU", self.properties())
        self.request = self.compiled.create_infer_request()

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self.request.infer({0: tensor})
        return cast(np.ndarray, self.request.get_output_tensor(0).data.copy())

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self.request.infer({0: tensor})
        return {
            (next(iter(o.get_names()), None) or str(i)): self.request.get_output_tensor(i).data.copy()
            for i, o in enumerate(self.compiled.outputs)
        }

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        infer, feed = self.request.infer, {0: tensor}
        return lambda: infer(feed)

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """The model compiled again with PERF_COUNT (the same properties otherwise): one untimed inference, then
        each executed node's real_time summed over ``runs``. A node of the compiled graph names one original op
        and lists the ops fused into it (rt_info originalLayersNames); ov.convert_model named those after the ONNX
        nodes, so the first that ``graph`` knows names the layer."""
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(self.files["model"]), str(self.files["weights"]))
        ir_types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
        compiled = core.compile_model(model, "CPU", self.properties() | {"PERF_COUNT": True})
        fused = {
            op.get_friendly_name(): original_names(op.get_rt_info()) for op in compiled.get_runtime_model().get_ordered_ops()
        }
        request = compiled.create_infer_request()
        request.infer({0: tensor})
        total: dict[str, float] = {}
        ops: dict[str, str] = {}
        for _ in range(runs):
            request.infer({0: tensor})
            for p in request.get_profiling_info():
                if p.status == p.Status.EXECUTED:
                    total[p.node_name] = total.get(p.node_name, 0.0) + p.real_time.total_seconds() * 1e3
                    # a Subgraph is a fused snippet: the op it came from says more (a FakeQuantize: quantize)
                    ops[p.node_name] = ir_types.get(p.node_name, p.node_type) if p.node_type == "Subgraph" else p.node_type
        out = []
        for node, ms in total.items():
            layer = None
            if graph is not None and ops[node] not in _NOT_LAYERS:
                layer = next((la for n in [node, *fused.get(node, [])] if (la := graph.find(n)) is not None), None)
            out.append(LayerTime(layer.node if layer else node, ops[node], ms / runs, layer is not None))
        return out

    def deactivate_impl(self) -> None:
        del self.request, self.compiled


# Nodes the CPU plugin adds between layers, named after a neighbour: their time is not that layer's.
_NOT_LAYERS = frozenset({"Reorder", "Convert", "FakeQuantize"})


def original_names(info: Any) -> list[str]:
    """The original ops a compiled node stands for, from its rt_info (empty when it has none)."""
    if "originalLayersNames" not in info:
        return []
    return [n for n in str(info["originalLayersNames"].astype(str)).split(",") if n]


class OpenvinoFp32Runtime(OpenvinoRuntime):
    key, precision, display = "openvino-fp32", "fp32", "OpenVINO FP32"
    artifacts = {"model": "openvino/model.xml", "weights": "openvino/model.bin"}


class OpenvinoInt8Runtime(OpenvinoRuntime):
    key, precision, display = "openvino-int8", "int8", "OpenVINO INT8"
    artifacts = {"model": "openvino/model.int8.xml", "weights": "openvino/model.int8.bin"}
