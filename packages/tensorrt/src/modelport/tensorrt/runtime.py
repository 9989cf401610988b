"""TensorRT engines (FP32 / FP16 / INT8) on one CUDA GPU, with pycuda.

- The engine is refused unless its manifest says it was built with this TensorRT
  version on this GPU model (engines are not portable; a foreign engine either fails
  to deserialize or runs tactics tuned for other hardware).
- Tensor-name I/O (TensorRT 10): every I/O tensor gets a device buffer bound with
  ``set_tensor_address``; inputs/outputs are staged through page-locked host buffers
  so the copies are truly asynchronous on the one stream.
- Timing: the base class times ``infer_impl`` on the host (H2D + execute + D2H + sync).
  CUDA events on the same stream also give the GPU's own time, reported beside it as
  ``extra_timings`` (``gpu_compute``: ``execute_async_v3`` alone, like trtexec's
  "GPU Compute Time"; ``gpu_total``: with both copies).
- Release: execution context, engine, runtime, buffers, stream, then the device's
  primary context, in that order, also when activation fails half-way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from rich.markup import escape

from modelport.common.artifacts import ArtifactStore
from modelport.common.config import Config
from modelport.common.errors import InputError, ModelportError
from modelport.common.schema import LatencyStats
from modelport.common.timing import summarize
from modelport.runtime.base import LayerTime, Runtime, concurrent_calls

from . import cuda

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph

_LOGGER: Any = None  # the Logger class below: defined only once tensorrt is imported


def trt_logger() -> Any:
    """One TensorRT logger per process, for the converter and the runtime, kept alive.

    TensorRT registers the first logger it is given process-wide and ignores (with a
    warning) any other while that one is in use; a Python logger collected too early
    would be called after it was freed. Warnings and errors go to our console;
    ``last_error`` keeps the latest error for the exception message.
    """
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt
        from modelport.common.log import console

        class Logger(trt.ILogger):  # type: ignore[misc]  # tensorrt ships no type information: its base class is Any here
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # pybind11 trampoline: the base must be initialised
                self.last_error: str | None = None

            def log(self, severity: Any, msg: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.ERROR):
                    self.last_error = msg
                    console.print(f"   [red]TensorRT:[/] {escape(str(msg))}")
                elif int(severity) <= int(trt.ILogger.Severity.WARNING):
                    console.print(f"   [yellow]TensorRT:[/] {escape(str(msg))}")

        _LOGGER = Logger()
    _LOGGER.last_error = None
    return _LOGGER


class ForeignEngine(InputError):
    """The engine was built with another TensorRT version or on another GPU."""


def read_manifest(artifact: Path) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads(ArtifactStore.manifest_path(artifact).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def engine_origin(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where an engine was built, from its manifest (``extra`` written by the converter)."""
    extra = (manifest or {}).get("extra") or {}
    if "tensorrt_version" not in extra or "gpu" not in extra:
        return None
    gpu = extra["gpu"]
    return {
        "tensorrt_version": extra["tensorrt_version"],
        "gpu": {"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability")},
    }


def check_origin(origin: dict[str, Any] | None, here: dict[str, Any], engine: Path, rebuild: str) -> None:
    """Refuse an engine that was not built with this TensorRT on this GPU model."""
    fix = f"rebuild it here: `modelport convert {rebuild} --force`"
    if origin is None:
        raise ForeignEngine(f"no manifest says which TensorRT and GPU built this engine; {fix}", engine)
    built, now = origin["gpu"], here["gpu"]
    problems = []
    if origin["tensorrt_version"] != here["tensorrt_version"]:
        problems.append(f"TensorRT {origin['tensorrt_version']} (here {here['tensorrt_version']})")
    if built["compute_capability"] != now["compute_capability"]:
        problems.append(f"compute capability {built['compute_capability']} (here {now['compute_capability']})")
    if built["name"] != now["name"]:
        problems.append(f"GPU {built['name']} (here {now['name']})")
    if problems:
        raise ForeignEngine(f"engine built elsewhere: {', '.join(problems)}; {fix}", engine)


class TensorrtRuntime(Runtime):
    backend = "tensorrt"
    device = "cuda"
    input_layout, input_dtype = "NCHW", "float32"
    requires = ("tensorrt", "pycuda")
    profiler = "TensorRT IProfiler (IExecutionContext.profiler, report_layer_time)"

    def __init__(self, config: Config, files: Mapping[str, Path]):
        super().__init__(config, files)
        # Set by the converter for an engine it just built (no manifest yet); else read from the manifest.
        self.origin: dict[str, Any] | None = None
        self._gpu_ms: dict[str, list[float]] = {"gpu_compute": [], "gpu_total": []}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cuda.missing_layer()

    @classmethod
    def version(cls) -> str:
        return cuda.tensorrt_version() or "not installed"

    def tool_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {"tensorrt": self.version()}
        try:
            out["pycuda"] = version("pycuda")
        except PackageNotFoundError:
            pass
        gpu = cuda.gpu_info(self.config.tensorrt.device)
        if gpu:
            out["cuda_driver"] = gpu.driver_cuda
            if gpu.driver_version:
                out["nvidia_driver"] = gpu.driver_version
        return out

    def settings(self) -> dict[str, object]:
        gpu = cuda.gpu_info(self.config.tensorrt.device)
        return {
            "device": self.config.tensorrt.device,
            "gpu": gpu.name if gpu else None,
            "compute_capability": gpu.compute_capability if gpu else None,
            "io": {n: {"shape": list(h.shape), "dtype": str(h.dtype)} for n, h in getattr(self, "_host", {}).items()},
            "host_buffers": "page-locked",
            "streams": 1,  # for batch-1 latency; a throughput run adds a context and stream per request
        }

    # -- lifecycle ----------------------------------------------------------------

    def _here(self, trt: Any) -> dict[str, Any]:
        gpu = cuda.require(self.config.tensorrt.device)
        return {"tensorrt_version": trt.__version__, "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability}}

    def activate_impl(self) -> None:
        import pycuda.driver as drv

        import tensorrt as trt

        engine_path = self.files["engine"]
        check_origin(self.origin or engine_origin(read_manifest(engine_path)), self._here(trt), engine_path, self.key)

        drv.init()
        self._drv = drv
        # The primary context is the one TensorRT's CUDA runtime calls use too.
        self._ctx = drv.Device(self.config.tensorrt.device).retain_primary_context()
        self._ctx.push()
        try:
            self._load(trt, drv, engine_path)
        except BaseException:
            self.deactivate_impl()
            raise

    def _load(self, trt: Any, drv: Any, engine_path: Path) -> None:
        logger = trt_logger()
        self._trt_runtime = trt.Runtime(logger)
        self._engine = self._trt_runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise ForeignEngine(f"TensorRT could not deserialize it: {logger.last_error or 'see the log above'}", engine_path)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelportError("TensorRT could not create an execution context (out of GPU memory?)", engine_path)
        self._stream = drv.Stream()
        self._events = [drv.Event() for _ in range(4)]
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        want = tuple(self.config.input.shape(self.input_layout))
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input:
                shape = tuple(self._engine.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    self._context.set_input_shape(name, want)  # dynamic engine: run at batch 1
                self._inputs.append(name)
            else:
                self._outputs.append(name)
        for name in self._inputs + self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            host = drv.pagelocked_empty(shape, dtype)
            dev = drv.mem_alloc(max(host.nbytes, 1))
            self._host[name], self._device[name] = host, dev
            if not self._context.set_tensor_address(name, int(dev)):
                raise ModelportError(f"TensorRT refused the buffer for tensor {name}", engine_path)
        if len(self._inputs) != 1 or not self._outputs:
            raise InputError(
                f"expected 1 input and at least 1 output, the engine has {self._inputs} -> {self._outputs}", engine_path
            )
        if self._host[self._inputs[0]].shape != want:
            raise InputError(
                f"engine input {self._inputs[0]} {self._host[self._inputs[0]].shape} does not match "
                f"the config ({self.input_layout} {want})",
                engine_path,
            )

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self._run(tensor)
        return cast(np.ndarray, self._host[self._outputs[0]].reshape(1, -1).copy())

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """One execution, then every output binding in its engine shape, under the source model's name (the ONNX
        parser names an engine output after the ONNX graph output, in the graph's order)."""
        self._run(tensor)
        return {self.source_output_name([name], i): self._host[name].copy() for i, name in enumerate(self._outputs)}

    def _run(self, tensor: np.ndarray) -> None:
        """H2D, execute, D2H of every output binding (a detector's are all read), timed by CUDA events."""
        drv, stream, (e0, e1, e2, e3) = self._drv, self._stream, self._events
        (inp,) = self._inputs
        np.copyto(self._host[inp], tensor, casting="same_kind")
        e0.record(stream)
        drv.memcpy_htod_async(self._device[inp], self._host[inp], stream)
        e1.record(stream)
        if not self._context.execute_async_v3(stream.handle):
            raise ModelportError("TensorRT execute_async_v3 failed (see the TensorRT error above)", self.files["engine"])
        e2.record(stream)
        for out in self._outputs:
            drv.memcpy_dtoh_async(self._host[out], self._device[out], stream)
        e3.record(stream)
        stream.synchronize()
        self._gpu_ms["gpu_compute"].append(e1.time_till(e2))
        self._gpu_ms["gpu_total"].append(e0.time_till(e3))

    # -- concurrency: TensorRT's own, an execution context per CUDA stream on the one engine
    def concurrency_mechanism(self, workers: int) -> str:
        s = "s" if workers > 1 else ""
        return f"{workers} execution context{s} of one engine, each on its own CUDA stream"

    def _extra_slot(self) -> tuple[Any, Any, dict[str, np.ndarray], dict[str, Any]]:
        """Another execution context with its own stream and buffers (a context holds its I/O addresses)."""
        drv = self._drv
        context = self._engine.create_execution_context()
        if context is None:
            raise ModelportError("TensorRT could not create another execution context (out of GPU memory?)", self.files["engine"])
        host: dict[str, np.ndarray] = {}
        device: dict[str, Any] = {}
        for name in self._inputs + self._outputs:
            if name in self._inputs:
                context.set_input_shape(name, self._host[name].shape)
            host[name] = drv.pagelocked_empty(self._host[name].shape, self._host[name].dtype)
            device[name] = drv.mem_alloc(max(host[name].nbytes, 1))
            context.set_tensor_address(name, int(device[name]))
        return context, drv.Stream(), host, device

    def _slot_call(
        self, slot: tuple[Any, Any, dict[str, np.ndarray], dict[str, Any]], tensor: np.ndarray
    ) -> Callable[[], object]:
        context, stream, host, device = slot
        (inp,), outs = self._inputs, self._outputs
        drv, owner, entered = self._drv, threading.get_ident(), set()

        def call() -> object:
            if threading.get_ident() not in entered:  # the untimed first call: CUDA's context is per thread
                if threading.get_ident() != owner:
                    self._ctx.push()
                entered.add(threading.get_ident())
            np.copyto(host[inp], tensor, casting="same_kind")
            drv.memcpy_htod_async(device[inp], host[inp], stream)
            if not context.execute_async_v3(stream.handle):
                raise ModelportError("TensorRT execute_async_v3 failed (see the TensorRT error above)", self.files["engine"])
            for out in outs:
                drv.memcpy_dtoh_async(host[out], device[out], stream)
            stream.synchronize()
            return host[outs[0]]

        return call

    def run_concurrent(self, tensor: np.ndarray, workers: int, seconds: float) -> tuple[list[int], float]:
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        slots = []
        try:
            for _ in range(workers - 1):
                slots.append(self._extra_slot())
            own = (self._context, self._stream, self._host, self._device)
            return concurrent_calls([self._slot_call(slot, tensor) for slot in [own, *slots]], seconds)
        finally:
            for _context, _stream, host, device in slots:
                for dev in device.values():
                    dev.free()
                for h in host.values():
                    free = getattr(h.base, "free", None)
                    if free:
                        free()
            slots.clear()

    @property
    def extra_timings(self) -> dict[str, LatencyStats]:
        """GPU times of the last ``bench.runs`` calls: the timed runs, which come last."""
        runs, warmup = self.config.bench.runs, self.config.bench.warmup
        out: dict[str, LatencyStats] = {}
        for name, ms in self._gpu_ms.items():
            if len(ms) >= runs:
                out[name] = summarize(np.asarray(ms[-runs:]) * 1e6, warmup)
        return out

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """An IProfiler on this context for one untimed and ``runs`` timed inferences (TensorRT reports each
        layer's GPU time once the stream synchronizes), then removed. The ONNX parser names a layer after its
        node and a fused layer after its parts joined by " + "; reformatting copies and Q/DQ layers keep theirs."""
        import tensorrt as trt

        class Profiler(trt.IProfiler):  # type: ignore[misc]  # tensorrt ships no type information: its base class is Any here
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.ms: dict[str, float] = {}
                self.on = False

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                if self.on:
                    self.ms[layer_name] = self.ms.get(layer_name, 0.0) + ms

        profiler = Profiler()
        self._context.profiler = profiler
        try:
            self.infer_impl(tensor)
            profiler.on = True
            for _ in range(runs):
                self.infer_impl(tensor)
        finally:
            self._context.profiler = None
        out = []
        for name, ms in profiler.ms.items():
            op = trt_layer_kind(name)
            layer = None
            if graph is not None and op == "layer":
                layer = next((la for part in name.split(" + ") if (la := graph.find(part.strip())) is not None), None)
            out.append(LayerTime(layer.node if layer else name, op, ms / runs, layer is not None))
        return out

    def deactivate_impl(self) -> None:
        # TensorRT objects first (they free device memory in the current context), then ours.
        for attr in ("_context", "_engine", "_trt_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)
        for dev in getattr(self, "_device", {}).values():
            dev.free()
        for host in getattr(self, "_host", {}).values():
            free = getattr(host.base, "free", None)  # the HostAllocation behind the page-locked array
            if free:
                free()
        self._device, self._host = {}, {}
        for attr in ("_events", "_stream"):
            if hasattr(self, attr):
                delattr(self, attr)
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            self._drv.Context.pop()
            ctx.detach()
            del self._ctx


def trt_layer_kind(name: str) -> str:
    """What a TensorRT engine layer is, from its name (IProfiler gives no type): its reformatting copies, a
    lone quantize or dequantize of a QDQ network, else a compute layer."""
    if name.startswith("Reformatting CopyNode"):
        return "Reformat"
    for op in ("QuantizeLinear", "DequantizeLinear"):
        if " + " not in name and op in name:
            return op
    return "layer"


class TensorrtFp32Runtime(TensorrtRuntime):
    key, precision, display = "tensorrt-fp32", "fp32", "TensorRT FP32"
    artifacts = {"engine": "tensorrt/fp32.engine"}


class TensorrtFp16Runtime(TensorrtRuntime):
    key, precision, display = "tensorrt-fp16", "fp16", "TensorRT FP16"
    artifacts = {"engine": "tensorrt/fp16.engine"}


class TensorrtInt8Runtime(TensorrtRuntime):
    key, precision, display = "tensorrt-int8", "int8", "TensorRT INT8"
    artifacts = {"engine": "tensorrt/int8.engine"}
