"""TFLite (a TFLite source is the reference) via ai-edge-litert, falling back to tf.lite.

A full-integer model takes its own integer tensor (the one preprocessing's uint8/int8
input) and its integer output is dequantized, so every row compares real values.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.common.preprocess import DType, Layout
from modelport.runtime.base import Runtime


def interpreter_class() -> tuple[Any, Any]:
    """(Interpreter, OpResolverType) from ai-edge-litert, else from tensorflow: what reads a .tflite here."""
    if importlib.util.find_spec("ai_edge_litert"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    else:
        from tensorflow.lite.python.interpreter import Interpreter, OpResolverType
    return Interpreter, OpResolverType


class TfliteRuntime(Runtime):
    key, backend, precision, display = "tflite", "tflite", "fp32", "TFLite FP32"
    input_layout, input_dtype = "NHWC", "float32"
    artifacts = {"model": "source/model.tflite"}
    layer_times_reason = (
        "the LiteRT/TFLite Python Interpreter exposes no op profiler "
        "(per-op time is in the C++ benchmark_model tool's --enable_op_profiling)"
    )

    @classmethod
    def made_by(cls) -> str:
        return "fetch"  # the source model itself

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tensorflow"):
            return None
        return "neither ai-edge-litert nor tensorflow is installed in this env"

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        for dist in ("ai-edge-litert", "tensorflow"):
            try:
                return f"{dist} {version(dist)}"
            except PackageNotFoundError:
                continue
        return "not installed"

    @classmethod
    def tensor_format(cls, config: Config) -> tuple[Layout, DType]:
        return "NHWC", config.input.dtype  # the model's own: float32, or a full-integer model's uint8/int8

    def __init__(self, config: Config, files: Mapping[str, Path]):
        super().__init__(config, files)
        if self.input_dtype != "float32":
            self.precision, self.display = "int8", "TFLite INT8"

    def settings(self) -> dict[str, object]:
        return {"threads": self.config.tflite.threads, "xnnpack": self.config.tflite.xnnpack}

    def thread_count(self) -> int:
        return self.config.tflite.threads

    def config_with_threads(self, threads: int) -> Config:
        return self.config.model_copy(update={"tflite": self.config.tflite.model_copy(update={"threads": threads})})

    def concurrency_mechanism(self, workers: int) -> str:
        # An Interpreter is not thread-safe: TFLite's way to serve requests at once is one per worker.
        return f"{workers} thread{'s' if workers > 1 else ''}, an Interpreter each"

    def activate_impl(self) -> None:
        Interpreter, OpResolverType = interpreter_class()
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
        ins, outs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(ins) != 1 or not outs:
            raise InputError(
                f"a model has one input and at least one output; this one has {len(ins)} and {len(outs)}", self.files["model"]
            )
        (inp,) = ins
        expected = self.input_shape()
        if tuple(inp["shape"]) != expected and -1 in inp["shape_signature"]:
            self.interp.resize_tensor_input(inp["index"], list(expected))  # dynamic dims: the config's size
            self.interp.allocate_tensors()
            (inp,) = self.interp.get_input_details()
        if tuple(inp["shape"]) != expected or np.dtype(inp["dtype"]).name != self.input_dtype:
            raise InputError(
                f"model input {list(inp['shape'])} {np.dtype(inp['dtype']).name} does not match the config "
                f"([input] size {list(self.config.input.size)} -> {self.input_dtype} {list(expected)})",
                self.files["model"],
            )
        self.in_index = inp["index"]
        # Every output tensor in the model's order, each with its own quantization (a quantized detector's boxes
        # and scores have different scales): index and (scale, zero point), None for a float output.
        self.out_tensors: dict[str, tuple[int, tuple[float, int] | None]] = {}
        for out in outs:
            scale, zero = out["quantization"]
            quantized = np.dtype(out["dtype"]).kind in "iu" and scale
            self.out_tensors[out["name"]] = (out["index"], (float(scale), int(zero)) if quantized else None)
        self.out_index, self.dequantize = next(iter(self.out_tensors.values()))

    def _output(self, index: int, dequantize: tuple[float, int] | None) -> np.ndarray:
        out = self.interp.get_tensor(index)
        if dequantize is None:
            return cast(np.ndarray, out.copy())
        scale, zero = dequantize
        return cast(np.ndarray, (out.astype(np.float32) - zero) * np.float32(scale))

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.in_index, tensor)
        self.interp.invoke()
        return self._output(self.out_index, self.dequantize)

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """One invoke, then every output tensor under its name in the model (a TFLite source's own names)."""
        self.interp.set_tensor(self.in_index, tensor)
        self.interp.invoke()
        return {name: self._output(index, dq) for name, (index, dq) in self.out_tensors.items()}

    def set_batch_impl(self, n: int) -> None:
        h, w = self.config.input.size
        self.interp.resize_tensor_input(self.in_index, [n, h, w, 3])
        self.interp.allocate_tensors()

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        interp, i, o = self.interp, self.in_index, self.out_index

        def call() -> object:
            interp.set_tensor(i, tensor)
            interp.invoke()
            return interp.get_tensor(o)  # get_tensor copies already

        return call

    def deactivate_impl(self) -> None:
        del self.interp


class TfliteDynamicRuntime(TfliteRuntime):
    """The source model with its RESHAPE unpinned from batch 1 (`convert tflite-dynamic`), for batch sweeps."""

    artifacts = {"model": "tflite/model.dynamic.tflite"}
    max_batch = 64

    @classmethod
    def made_by(cls) -> str:
        return "convert tflite-dynamic"
