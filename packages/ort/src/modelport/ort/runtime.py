"""onnxruntime CPU, session options from [onnxruntime]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.common.onnx_safety import check_onnx
from modelport.common.preprocess import DType, Layout
from modelport.runtime.base import ONNX_MODEL, Runtime

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntime(Runtime):
    backend = "onnxruntime"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("onnxruntime", "onnx")

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version("onnxruntime")

    def settings(self) -> dict[str, object]:
        return self.config.onnxruntime.model_dump() | {"providers": ["CPUExecutionProvider"]}

    def activate_impl(self) -> None:
        import onnxruntime as ort

        check_onnx(self.files["model"])
        c = self.config.onnxruntime
        so = ort.SessionOptions()
        so.intra_op_num_threads = c.intra_op_threads
        so.inter_op_num_threads = c.inter_op_threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[c.graph_optimization_level])
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if c.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.files["model"]), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise self.model_error(e) from None
        (inp,) = self.session.get_inputs()
        expected = self.expected_input_shape()
        if not self._shape_matches(inp.shape):
            raise InputError(
                f"model input {inp.name} {inp.shape} does not match the config ({self.input_layout} {expected})",
                self.files["model"],
            )
        self.input_name = inp.name

    def expected_input_shape(self) -> list[int | str]:
        return list(self.config.input.shape(self.input_layout))

    def _shape_matches(self, shape: Sequence[int | str]) -> bool:
        return list(shape) == self.expected_input_shape()

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self.session.run(None, {self.input_name: tensor})[0])

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: tensor})
        return {o.name: cast(np.ndarray, v) for o, v in zip(self.session.get_outputs(), outputs, strict=True)}

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        run, feed = self.session.run, {self.input_name: tensor}
        return lambda: run(None, feed)

    def deactivate_impl(self) -> None:
        del self.session


class OnnxSourceRuntime(OnnxRuntime):
    """An ONNX source model as it came (any layout, fixed or dynamic batch): the reference."""

    key, precision, display = "onnx-source", "fp32", "ONNX FP32 (source)"
    artifacts = {"model": "source/model.onnx"}

    @classmethod
    def tensor_format(cls, config: Config) -> tuple[Layout, DType]:
        return (config.contract.layout if config.contract is not None else "NCHW"), "float32"

    def _shape_matches(self, shape: Sequence[int | str]) -> bool:
        """Dynamic dims (batch, or height/width the config sizes) take any value; fixed ones must fit."""
        want = self.input_shape()
        return len(shape) == len(want) and all(not isinstance(d, int) or d == w for d, w in zip(shape, want, strict=True))


class OnnxFp32Runtime(OnnxRuntime):
    key, precision, display = "onnx", "fp32", "ONNX FP32"
    artifacts = {"model": ONNX_MODEL}


class OnnxInt8Runtime(OnnxRuntime):
    key, precision, display = "onnx-int8", "int8", "ONNX INT8"
    artifacts = {"model": "onnx/model.int8.onnx"}


class OnnxDynamicRuntime(OnnxRuntime):
    """The same model with a symbolic batch dim (`convert onnx-dynamic`), for batch sweeps only:
    the static NCHW model stays the default artifact (RKNN and TensorRT need it)."""

    max_batch = 64

    def expected_input_shape(self) -> list[int | str]:
        return ["batch", *self.config.input.shape(self.input_layout)[1:]]


class OnnxFp32DynamicRuntime(OnnxDynamicRuntime):
    key, precision, display = "onnx", "fp32", "ONNX FP32"
    artifacts = {"model": "onnx/model.dynamic.onnx"}


class OnnxInt8DynamicRuntime(OnnxDynamicRuntime):
    key, precision, display = "onnx-int8", "int8", "ONNX INT8"
    artifacts = {"model": "onnx/model.int8.dynamic.onnx"}
