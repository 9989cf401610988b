"""TFLite (the reference) via ai-edge-litert, falling back to tf.lite."""

from __future__ import annotations

import importlib.util

import numpy as np

from modelport.common.errors import InputError

from ..runtime import Runtime


def _interpreter_class():
    if importlib.util.find_spec("ai_edge_litert"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    else:
        from tensorflow.lite.python.interpreter import Interpreter, OpResolverType
    return Interpreter, OpResolverType


class TfliteRuntime(Runtime):
    key, backend, precision, display = "tflite", "tflite", "fp32", "TFLite FP32"
    input_layout, input_dtype = "NHWC", "float32"
    artifacts = {"model": "source/model.tflite"}

    @classmethod
    def made_by(cls) -> str:
        return "fetch"  # the source model itself

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tensorflow"):
            return None
        return "neither ai-edge-litert nor tensorflow is installed in this env"

    @classmethod
    def version(cls):
        from importlib.metadata import PackageNotFoundError, version

        for dist in ("ai-edge-litert", "tensorflow"):
            try:
                return f"{dist} {version(dist)}"
            except PackageNotFoundError:
                continue
        return "not installed"

    def settings(self):
        return {"threads": self.config.tflite.threads, "xnnpack": self.config.tflite.xnnpack}

    def activate_impl(self):
        Interpreter, OpResolverType = _interpreter_class()
        resolver = OpResolverType.AUTO if self.config.tflite.xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interp = Interpreter(
                model_path=str(self.files["model"]),
                num_threads=self.config.tflite.threads,
                experimental_op_resolver_type=resolver,
            )
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise self.model_error(e) from None
        (inp,) = self.interp.get_input_details()
        (out,) = self.interp.get_output_details()
        expected = self.config.input.shape("NHWC")
        if tuple(inp["shape"]) != expected or inp["dtype"] != np.float32:
            raise InputError(
                f"model input {list(inp['shape'])} {np.dtype(inp['dtype']).name} does not match the config "
                f"([input] size {list(self.config.input.size)} -> float32 {list(expected)})",
                self.files["model"],
            )
        self.in_index, self.out_index = inp["index"], out["index"]

    def infer_impl(self, tensor):
        self.interp.set_tensor(self.in_index, tensor)
        self.interp.invoke()
        return self.interp.get_tensor(self.out_index).copy()

    def set_batch_impl(self, n):
        h, w = self.config.input.size
        self.interp.resize_tensor_input(self.in_index, [n, h, w, 3])
        self.interp.allocate_tensors()

    def own_call(self, tensor):
        interp, i, o = self.interp, self.in_index, self.out_index

        def call():
            interp.set_tensor(i, tensor)
            interp.invoke()
            return interp.get_tensor(o)  # get_tensor copies already

        return call

    def deactivate_impl(self):
        del self.interp


class TfliteDynamicRuntime(TfliteRuntime):
    """The source model with its RESHAPE unpinned from batch 1 (`convert tflite-dynamic`), for batch sweeps."""

    artifacts = {"model": "tflite/model.dynamic.tflite"}
    max_batch = 64

    @classmethod
    def made_by(cls) -> str:
        return "convert tflite-dynamic"
