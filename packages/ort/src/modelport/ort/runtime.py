"""onnxruntime CPU, session options from [onnxruntime]."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.common.onnx_safety import check_onnx
from modelport.common.preprocess import DType, Layout
from modelport.runtime.base import ONNX_MODEL, LayerTime, Runtime

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntime(Runtime):
    backend = "onnxruntime"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("onnxruntime", "onnx")
    profiler = "onnxruntime profiling (SessionOptions.enable_profiling, its kernel_time events)"
    # InferenceSession.run is safe to call from several threads at once (onnxruntime's own concurrency):
    # the workers share one session, made at the split intra-op thread count.
    thread_safe = True

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version("onnxruntime")

    def settings(self) -> dict[str, object]:
        return self.config.onnxruntime.model_dump() | {"providers": ["CPUExecutionProvider"]}

    def thread_count(self) -> int:
        return self.config.onnxruntime.intra_op_threads

    def config_with_threads(self, threads: int) -> Config:
        ort = self.config.onnxruntime.model_copy(update={"intra_op_threads": threads})
        return self.config.model_copy(update={"onnxruntime": ort})

    def concurrency_mechanism(self, workers: int) -> str:
        return f"{workers} concurrent run() call{'s' if workers > 1 else ''} on one InferenceSession"

    def session_options(self) -> Any:
        import onnxruntime as ort

        c = self.config.onnxruntime
        so = ort.SessionOptions()
        so.intra_op_num_threads = c.intra_op_threads
        so.inter_op_num_threads = c.inter_op_threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[c.graph_optimization_level])
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if c.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        return so

    def activate_impl(self) -> None:
        import onnxruntime as ort

        check_onnx(self.files["model"])
        try:
            self.session = ort.InferenceSession(
                str(self.files["model"]), self.session_options(), providers=["CPUExecutionProvider"]
            )
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

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """A second session, the same options plus profiling, run ``runs`` + 1 times; each node's first run (its
        lazy setup) is dropped. Node names are the optimized graph's: fused and layout-transformed nodes carry the
        ONNX node or tensor name they came from, which ``graph`` maps back to a layer."""
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="modelport-ort-profile-") as tmp:
            so = self.session_options()
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / "profile")
            session = ort.InferenceSession(str(self.files["model"]), so, providers=["CPUExecutionProvider"])
            feed = {self.input_name: tensor}
            for _ in range(runs + 1):
                session.run(None, feed)
            trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
        return kernel_times(trace, runs, graph)

    def deactivate_impl(self) -> None:
        del self.session


_KERNEL = "_kernel_time"


def kernel_times(trace: list[dict[str, Any]], runs: int, graph: OnnxGraph | None) -> list[LayerTime]:
    """Mean ms per node of an onnxruntime profile (Chrome trace events, µs), in first-run order, each node's first
    event dropped. The reorders, transposes and Q/DQ nodes ORT adds around a layer keep their own names and
    entries: their time is data movement, not the layer's arithmetic."""
    seen: dict[str, tuple[str, list[int]]] = {}
    for e in trace:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith(_KERNEL):
            node = name[: -len(_KERNEL)]
            seen.setdefault(node, (str(e.get("args", {}).get("op_name", "?")), []))[1].append(int(e.get("dur", 0)))
    out = []
    for node, (op, durations) in seen.items():
        timed = durations[1:] or durations
        layer = graph.find(node) if graph is not None and op not in _NOT_LAYERS else None
        out.append(LayerTime(layer.node if layer else node, op, sum(timed) / len(timed) / 1000, layer is not None))
    return out


# Nodes onnxruntime adds around a layer (named after the layer's tensor): their time is not the layer's.
_NOT_LAYERS = frozenset({"ReorderInput", "ReorderOutput", "Transpose", "QuantizeLinear", "DequantizeLinear"})


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
