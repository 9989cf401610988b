"""OpenVINO CPU runtimes for the IR that `convert openvino-fp32` / `openvino-int8` write.

compile_model's properties come from [openvino]: INFERENCE_PRECISION_HINT f32 by default (on
Xeons with AMX the CPU plugin's own default is bf16: cosine min 0.9986 vs the reference, f32
gives 1.0000; the INT8 model gets the same hint, so the layers NNCF left in float run in f32).
No batch twin: the IR of a tflite2onnx model bakes batch 1 into its Reshape constants, so
reshaping it fails; the depth sweeps run N sequential batch-1 requests and say so (mode loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.runtime.base import Runtime


def threads(config: Config) -> int:
    """[openvino] threads when set, else [tflite] threads (the reference runtime's, so the rows
    compare at one thread count)."""
    return config.openvino.threads or config.tflite.threads


class OpenvinoRuntime(Runtime):
    backend = "openvino"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("openvino",)

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

    def deactivate_impl(self) -> None:
        del self.request, self.compiled


class OpenvinoFp32Runtime(OpenvinoRuntime):
    key, precision, display = "openvino-fp32", "fp32", "OpenVINO FP32"
    artifacts = {"model": "openvino/model.xml", "weights": "openvino/model.bin"}


class OpenvinoInt8Runtime(OpenvinoRuntime):
    key, precision, display = "openvino-int8", "int8", "OpenVINO INT8"
    artifacts = {"model": "openvino/model.int8.xml", "weights": "openvino/model.int8.bin"}
