"""MNN CPU runtimes for the models `convert mnn-fp32` / `mnn-int8` write: ``MNN.Interpreter`` and one session.

The session's schedule comes from [mnn]: threads, and MNN's precision, memory and power modes
(BackendConfig). Precision ``normal`` is fp32 on x86; ``low`` lets MNN use fp16/bf16 where the CPU has it.
No batch twin: the converted model keeps the ONNX model's batch of one, so the depth sweeps
run N sequential batch-1 calls and say so (mode loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.runtime.base import LayerTime, Runtime

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph

# MNN::BackendConfig's enums, in their declared order (the session config takes their integer values).
PRECISION = {"normal": 0, "high": 1, "low": 2, "low_bf16": 3}
MODE = {"normal": 0, "high": 1, "low": 2}  # MemoryMode and PowerMode


def threads(config: Config) -> int:
    """[mnn] threads when set, else [tflite] threads (the reference runtime's, so the rows compare at one count)."""
    return config.mnn.threads or config.tflite.threads


class MnnRuntime(Runtime):
    backend = "mnn"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("MNN",)
    profiler = "MNN runSessionWithCallBackInfo (host time from each op's before- to its after-callback)"

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version("MNN")

    def session_config(self) -> dict[str, Any]:
        c = self.config.mnn
        return {
            "backend": "CPU",
            "numThread": threads(self.config),
            "precision": PRECISION[c.precision],
            "memory": MODE[c.memory],
            "power": MODE[c.power],
        }

    def settings(self) -> dict[str, object]:
        c = self.config.mnn
        return {
            "device": "CPU",
            "numThread": threads(self.config),
            "precision": c.precision,
            "memory": c.memory,
            "power": c.power,
        }

    def thread_count(self) -> int:
        return threads(self.config)

    def config_with_threads(self, n: int) -> Config:
        return self.config.model_copy(update={"mnn": self.config.mnn.model_copy(update={"threads": n})})

    def concurrency_mechanism(self, workers: int) -> str:
        # A session's tensors are its own: MNN serves requests at once with an Interpreter + session per worker.
        return f"{workers} thread{'s' if workers > 1 else ''}, an Interpreter and session each"

    def activate_impl(self) -> None:
        import MNN

        path = str(self.files["model"])
        try:
            interpreter = MNN.Interpreter(path)
        except Exception as e:  # MNN raises a bare Exception with its own text
            raise self.model_error(e) from None
        session = interpreter.createSession(self.session_config())
        inputs, outputs = interpreter.getSessionInputAll(session), interpreter.getSessionOutputAll(session)
        if len(inputs) != 1 or not outputs:
            raise InputError(
                f"{self.display} expects one input and at least one output, the model has {len(inputs)} and {len(outputs)}",
                self.files["model"],
            )
        self.input = next(iter(inputs.values()))
        shape, expected = list(self.input.getShape()), list(self.input_shape())
        if shape != expected:
            raise InputError(
                f"model input {shape} does not match the config ({self.input_layout} {expected})", self.files["model"]
            )
        self.interpreter, self.session, self.mnn = interpreter, session, MNN
        # MNNConvert keeps the ONNX output names; the session's dict is not in the model's order, the contract is.
        self.outputs = self.in_source_order(outputs)
        # An output's own buffer is the backend's (an INT8 model's last op may leave it packed or not on the host:
        # read directly it was garbage on a model ending in a reshaped Gemm): each is read through a host copy.
        self.host = {name: MNN.Tensor(t, MNN.Tensor_DimensionType_Caffe) for name, t in self.outputs.items()}

    def _host(self, tensor: np.ndarray) -> Any:
        """``tensor`` as an MNN host tensor in NCHW (MNN's "Caffe" dimension type)."""
        data = np.ascontiguousarray(tensor, dtype=np.float32)
        return self.mnn.Tensor(tuple(data.shape), self.mnn.Halide_Type_Float, data, self.mnn.Tensor_DimensionType_Caffe)

    def _read(self, name: str) -> np.ndarray:
        host = self.host[name]
        self.outputs[name].copyToHostTensor(host)
        return np.array(host.getNumpyData(), dtype=np.float32).copy()

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self.input.copyFrom(self._host(tensor))
        self.interpreter.runSession(self.session)
        return self._read(next(iter(self.outputs)))

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """One run of the session, then every output tensor under the source model's name."""
        self.input.copyFrom(self._host(tensor))
        self.interpreter.runSession(self.session)
        return {name: self._read(name) for name in self.outputs}

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        host, copy_in, run, session = self._host(tensor), self.input.copyFrom, self.interpreter.runSession, self.session

        def call() -> None:
            copy_in(host)
            run(session)

        return call

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """runSessionWithCallBackInfo on this session: each op's time from its before-callback to its after-callback
        (host clock, so a few µs of Python per op are in it), one untimed run first. MNNConvert keeps the ONNX node
        names on the ops it converts; the Raster ops it adds to move data between layouts are named after a
        neighbour and keep their own entries."""
        started: dict[str, int] = {}
        total: dict[str, int] = {}
        ops: dict[str, str] = {}
        timing = [False]

        def before(_tensors: Any, info: Any) -> bool:
            started[info.getName()] = time.perf_counter_ns()
            return True

        def after(_tensors: Any, info: Any) -> bool:
            end, name = time.perf_counter_ns(), info.getName()
            if timing[0]:
                total[name] = total.get(name, 0) + end - started.get(name, end)
                ops.setdefault(name, info.getType().split("[")[0].strip())  # "Convolution [ DT_INT8 ] ": the op
            return True

        self.input.copyFrom(self._host(tensor))
        self.interpreter.runSessionWithCallBackInfo(self.session, before, after)
        timing[0] = True
        for _ in range(runs):
            self.interpreter.runSessionWithCallBackInfo(self.session, before, after)
        out = []
        for name, ns in total.items():
            layer = graph.find(name) if graph is not None and ops[name] not in _NOT_LAYERS else None
            out.append(LayerTime(layer.node if layer else name, ops[name], ns / runs / 1e6, layer is not None))
        return out

    def deactivate_impl(self) -> None:
        # The Python API has no releaseSession: the session goes with its interpreter.
        del self.session, self.interpreter, self.input, self.outputs, self.host


# Ops MNN adds between layers (memory layout and precision moves), named after a neighbour.
_NOT_LAYERS = frozenset({"Raster", "ConvertTensor", "FloatToInt8", "Int8ToFloat"})


class MnnFp32Runtime(MnnRuntime):
    key, precision, display = "mnn-fp32", "fp32", "MNN FP32"
    artifacts = {"model": "mnn/model.mnn"}


class MnnW8Runtime(MnnRuntime):
    # MNN expands the INT8 weights to float at load: float kernels, FP32 speed.
    key, precision, display = "mnn-w8", "int8-weights+fp32", "MNN INT8 weights (FP32 compute)"
    artifacts = {"model": "mnn/model.w8.mnn"}


class MnnInt8Runtime(MnnRuntime):
    key, precision, display = "mnn-int8", "int8", "MNN INT8"
    artifacts = {"model": "mnn/model.int8.mnn"}
