"""OpenVINO CPU runtimes for the IR that `convert openvino-fp32` / `openvino-int8` write.

compile_model's properties come from [openvino]: INFERENCE_PRECISION_HINT f32 by default (on
Xeons with AMX the CPU plugin's own default is bf16: cosine min 0.9986 vs the reference, f32
gives 1.0000; the INT8 model gets the same hint, so the layers NNCF left in float run in f32).
No batch twin: the IR of a tflite2onnx model bakes batch 1 into its Reshape constants, so
reshaping it fails; the depth sweeps run N sequential batch-1 requests and say so (mode loop).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
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
        self.core, self.model = core, model
        self.streams: dict[int, tuple[int, int]] = {}  # concurrency -> (streams, threads per stream) compiled for it
        self.compiled = core.compile_model(model, "CPU", self.properties())
        self.request = self.compiled.create_infer_request()

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self.request.infer({0: tensor})
        return cast(np.ndarray, self.request.get_output_tensor(0).data.copy())

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self.request.infer({0: tensor})
        return {
            self.source_output_name(o.get_names(), i): self.request.get_output_tensor(i).data.copy()
            for i, o in enumerate(self.compiled.outputs)
        }

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        infer, feed = self.request.infer, {0: tensor}
        return lambda: infer(feed)

    # -- concurrency: OpenVINO's own, N asynchronous infer requests on N streams of one compiled model
    def thread_count(self) -> int:
        return threads(self.config)

    def concurrency_mechanism(self, workers: int) -> str:
        streams, _ = getattr(self, "streams", {}).get(workers, (workers, None))
        return (
            f"AsyncInferQueue: {workers} infer request{'s' if workers > 1 else ''} on {streams} "
            f"stream{'s' if streams > 1 else ''} of one compiled model"
        )

    def worker_threads(self, workers: int) -> int | None:
        """Threads per stream, as OpenVINO compiled them (it caps the streams at the cores)."""
        _, per = getattr(self, "streams", {}).get(workers, (None, None))
        return per if per is not None else super().worker_threads(workers)

    def compiled_for(self, workers: int) -> Any:
        """The row's compiled model for one request; for more, one with a stream per request (as many as
        OpenVINO grants: it caps them at the cores) and the threads split between them (OpenVINO divides
        INFERENCE_NUM_THREADS between its streams)."""
        if workers == 1:
            compiled = self.compiled
        else:
            per = super().worker_threads(workers) or 1
            props = self.properties() | {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": workers,
                "INFERENCE_NUM_THREADS": per * workers,
            }
            compiled = self.core.compile_model(self.model, "CPU", props)
        streams, total = int(compiled.get_property("NUM_STREAMS")), int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.streams[workers] = (streams, max(1, total // max(1, streams)))
        return compiled

    def run_concurrent(self, tensor: np.ndarray, workers: int, seconds: float) -> tuple[list[int], float]:
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        return async_run(self.compiled_for(workers), workers, tensor, seconds)

    def peer_throughput(self, tensor: np.ndarray, seconds: float, tool_first: bool = False) -> dict[str, object]:
        """Ours and `benchmark_app -hint throughput` on the same IR at the same settings: PERFORMANCE_HINT
        THROUGHPUT with OpenVINO's own stream count and its optimal number of requests, the row's inference
        precision, OpenVINO's default thread count (benchmark_app refuses -nthreads with a hint)."""
        precision = self.config.openvino.inference_precision
        # benchmark_app makes an image input u8 unless told (a quarter of the bytes per request, measured 4% more
        # FPS on MobileNetV2 INT8 here): -ip gives it the element type our requests carry, so both run one model
        given = {np.dtype(np.float32): "f32", np.dtype(np.uint8): "u8", np.dtype(np.float16): "f16"}.get(tensor.dtype)
        tool = [
            str(Path(sys.executable).with_name("benchmark_app")),
            *("-m", str(self.files["model"]), "-d", "CPU", "-hint", "throughput"),
            *("-infer_precision", precision, "-t", f"{seconds:g}"),
            *(("-ip", given) if given else ()),
        ]

        def theirs() -> float:
            proc = subprocess.run(tool, capture_output=True, text=True, timeout=seconds * 10 + 120, check=False)
            found = re.search(r"Throughput:\s*([0-9.]+)\s*FPS", proc.stdout)
            if proc.returncode != 0 or not found:
                tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"benchmark_app exited {proc.returncode} without a throughput: {tail[0]}")
            return float(found.group(1))

        tool_fps = theirs() if tool_first else 0.0
        compiled = self.core.compile_model(
            self.model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision}
        )
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        streams = int(compiled.get_property("NUM_STREAMS"))
        samples, wall = async_run(compiled, requests, tensor, seconds)
        del compiled
        if not tool_first:
            tool_fps = theirs()
        return {
            "ours_fps": len(samples) / wall,
            "ours_requests": requests,
            "ours_streams": streams,
            "tool_fps": tool_fps,
            "tool": " ".join(["benchmark_app", *tool[1:]]),
        }

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
        del self.request, self.compiled, self.model, self.core


def async_run(compiled: Any, requests: int, tensor: np.ndarray, seconds: float) -> tuple[list[int], float]:
    """``requests`` infer requests of an AsyncInferQueue kept busy for ``seconds``: each request's ns from its
    start to its completion callback, and the wall seconds from the start to the last completion. Each request
    holds the input from the start (as benchmark_app's inference-only mode does: a request re-run on the same
    tensor copies nothing), and is timed from when it starts, not from when the loop began waiting for it."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, requests)
    for i in range(requests):
        queue[i].set_input_tensor(ov.Tensor(np.ascontiguousarray(tensor)))
    clock = time.perf_counter_ns
    samples: list[int] = []
    last = [0]

    def done(_request: Any, started: int) -> None:
        now = clock()
        samples.append(now - started)
        last[0] = max(last[0], now)

    queue.set_callback(done)
    for _ in range(requests):  # untimed: each request's first inference pays its lazy setup
        queue.start_async(userdata=clock())
    queue.wait_all()
    samples.clear()
    start = clock()
    deadline = start + int(seconds * 1e9)
    while clock() < deadline:
        queue.get_idle_request_id()  # blocks until one is free
        queue.start_async(userdata=clock())
    queue.wait_all()
    return list(samples), (last[0] - start) / 1e9


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
