"""The one runtime interface (after Polygraphy's BaseRunner).

The base owns the lifecycle and the checks; a backend implements only
``activate_impl`` / ``infer_impl`` / ``deactivate_impl``. Toolchains are imported
inside those methods, never at module import, so every env can list every runtime.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

import numpy as np

from modelport.common.artifacts import ArtifactStore
from modelport.common.config import Config
from modelport.common.errors import InputError, ToolchainMissing
from modelport.common.log import captured
from modelport.common.preprocess import DType, Layout
from modelport.common.timing import cores

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph

T = TypeVar("T")
ONNX_MODEL = "onnx/model.onnx"  # the FP32 ONNX: `convert onnx` writes it, every other toolchain converts from it


@dataclass(frozen=True)
class LayerTime:
    """One layer's mean time per inference, as the toolchain's profiler reports it."""

    name: str  # the ONNX layer (head node of onnx/model.onnx) when the toolchain's name maps to one, else the toolchain's
    op: str  # the toolchain's op or kernel type: what the quantize/dequantize/reorder split reads
    ms: float
    onnx: bool  # True: ``name`` is an ONNX layer name, the one the per-layer INT8 analysis uses


class Runtime:
    key: ClassVar[str]  # results file name and CLI name, e.g. "onnx-int8"
    backend: ClassVar[str]  # e.g. "onnxruntime"
    precision: ClassVar[str]  # fp32 / fp16 / int8
    display: ClassVar[str]  # e.g. "ONNX INT8"
    input_layout: Layout = "NCHW"  # class default; an instance may differ by config (tensor_format)
    input_dtype: DType = "float32"
    artifacts: ClassVar[Mapping[str, str]]  # role -> artifact path in the store
    requires: ClassVar[tuple[str, ...]] = ()  # import names the runtime needs
    device: ClassVar[str] = "cpu"
    # Largest batch infer() takes after set_batch(n). 1 = the model has a fixed batch of one: a batch
    # sweep then runs N sequential batch-1 calls and says so (bench/sweep.py).
    max_batch: ClassVar[int] = 1
    # True: one active instance takes infer() calls from several threads at once, so a throughput run
    # shares it; False: each worker thread gets its own instance (the safe default).
    thread_safe: ClassVar[bool] = False
    # A runtime with a per-layer profiler overrides layer_times() and names the hook in ``profiler``;
    # ``layer_times_reason`` is why layer_times() returns None.
    profiler: ClassVar[str] = ""
    layer_times_reason: ClassVar[str] = "modelport has no per-layer timing hook for this toolchain"

    def __init__(self, config: Config, files: Mapping[str, Path]):
        self.config = config
        self.files = {role: Path(p) for role, p in files.items()}
        self.active = False
        self.load_ms: float | None = None
        self.input_layout, self.input_dtype = self.tensor_format(config)

    @classmethod
    def tensor_format(cls, config: Config) -> tuple[Layout, DType]:
        """Layout and dtype of the tensor infer() takes (a source runtime's follow the source model)."""
        return cls.input_layout, cls.input_dtype

    @classmethod
    def from_store(cls, store: ArtifactStore, config: Config) -> Self:
        return cls(config, {role: store.path(rel) for role, rel in cls.artifacts.items()})

    # -- what a backend says about itself
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this runtime can run here, else exactly why not (cheap, no heavy imports)."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        return f"python module {', '.join(missing)} not installed in this env" if missing else None

    @classmethod
    def version(cls) -> str:
        return "unknown"

    @classmethod
    def made_by(cls) -> str:
        """The `modelport` step that makes this runtime's files."""
        return f"convert {cls.key}"

    def tool_versions(self) -> dict[str, str]:
        return {self.backend: self.version()}

    def settings(self) -> dict[str, object]:
        return {}

    def input_shape(self) -> tuple[int, ...]:
        """The batch-1 tensor infer() takes."""
        return self.config.input.shape(self.input_layout)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files.values() if p.is_file())

    # -- lifecycle
    def activate(self) -> Self:
        reason = self.unavailable_reason()
        if reason:
            raise ToolchainMissing(f"{self.display}: {reason}")
        for role, p in self.files.items():
            if not p.is_file():
                raise InputError(f"{self.display} needs its {role} file: run `modelport {self.made_by()}` first", p)
        t0 = time.perf_counter_ns()
        with captured():  # loading is when toolchains announce themselves (TFLite's XNNPACK delegate line)
            self.activate_impl()
        self.load_ms = (time.perf_counter_ns() - t0) / 1e6
        self.active = True
        return self

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        return self.infer_impl(tensor)

    def infer_all(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (a detector's boxes and scores); infer() is the one-output case, and stays
        the timed call of a one-output model."""
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        return self.infer_all_impl(tensor)

    def set_batch(self, n: int) -> None:
        """Make the following infer() calls take a leading batch of ``n`` (the tensor is [n, ...])."""
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"{self.display} takes batches of 1..{self.max_batch}, not {n}")
        self.set_batch_impl(n)

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        """The toolchain's own inference call on ``tensor``, with no modelport code around it.

        What the benchmark's per-inference time is compared with (bench/overhead.py): the same
        work a hand-written loop over the toolchain's API would do.
        """
        raise NotImplementedError(f"{self.display} has no bare call for the overhead measurement")

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """Each layer's mean time over ``runs`` inferences of ``tensor`` from the toolchain's own profiler,
        in execution order, named through ``graph`` (onnx/model.onnx's layers) where the toolchain's names
        map to one; None when the toolchain exposes no per-layer time (``layer_times_reason`` says why).
        Profiling may slow a run down: the row's latency is never taken from here."""
        return None

    # -- concurrency. The generic mechanism is a pool of threads, each with its own runtime (one shared when
    # thread_safe); a backend with its own (async infer requests, concurrent runs on one session, extractors
    # on one net) says so in concurrency_mechanism and overrides concurrent_workers or run_concurrent. Every
    # mechanism splits the row's threads between workers (worker_threads): N workers each running the row's
    # own thread count would oversubscribe the cores and measure the scheduler, not the toolchain.
    def thread_count(self) -> int | None:
        """Threads one inference of this runtime uses (None: not a CPU thread count, e.g. a GPU)."""
        return None

    def config_with_threads(self, threads: int) -> Config:
        """This runtime's config with its thread count set to ``threads`` (a worker's runtime is made from it)."""
        return self.config

    def worker_threads(self, workers: int) -> int | None:
        """Threads per worker at ``workers`` concurrent requests: the row's own count for one worker, else
        that count split so workers x threads stays within this machine's cores (at least one each)."""
        own = self.thread_count()
        if own is None or workers == 1:
            return own
        return max(1, min(own, cores() // workers))

    def concurrency_mechanism(self, workers: int) -> str:
        """How ``workers`` requests run at once, as the report says it."""
        each = "sharing one runtime" if self.thread_safe else "one runtime each"
        return f"{workers} thread{'s' if workers > 1 else ''}, {each}"

    def worker_runtime(self, workers: int) -> Runtime:
        """An active runtime for one worker at ``workers`` concurrent requests: this one when its thread
        count is the worker's, else a fresh one at the worker's count (the caller releases it)."""
        per = self.worker_threads(workers)
        if per == self.thread_count():
            return self
        return type(self)(self.config_with_threads(per) if per is not None else self.config, self.files).activate()

    def concurrent_workers(self, workers: int) -> list[Runtime]:
        """An active runtime per worker thread: one shared when thread_safe, else one each (this one where its
        thread count fits). The caller deactivates the fresh ones: release_workers."""
        made: list[Runtime] = []
        try:
            if self.thread_safe:
                return [self.worker_runtime(workers)] * workers
            for i in range(workers):
                rt = self.worker_runtime(workers) if i == 0 else type(self)(made[0].config, self.files).activate()
                made.append(rt)
            return made
        except BaseException:
            self.release_workers(made)
            raise

    def release_workers(self, runtimes: list[Runtime]) -> None:
        for rt in runtimes:
            if rt is not self:
                rt.deactivate()

    def run_concurrent(self, tensor: np.ndarray, workers: int, seconds: float) -> tuple[list[int], float]:
        """``workers`` threads calling infer(tensor) back to back for ``seconds``: every call's ns and the
        wall seconds from the common start to the last call's end."""
        if not self.active:
            raise RuntimeError(f"{self.display} runtime is not active")
        runtimes = self.concurrent_workers(workers)
        try:
            return concurrent_calls([partial(rt.infer, tensor) for rt in runtimes], seconds)
        finally:
            self.release_workers(runtimes)

    def peer_throughput(self, tensor: np.ndarray, seconds: float, tool_first: bool = False) -> dict[str, object]:
        """One round of this runtime's throughput beside the toolchain's own benchmark tool's on the same
        files and settings, ``seconds`` each, the tool's run first if ``tool_first``: ``ours_fps``,
        ``tool_fps``, ``tool`` (its command line) and what else each chose."""
        raise NotImplementedError(f"{self.display} has no benchmark tool of its own to compare with")

    def deactivate(self) -> None:
        if self.active:
            self.deactivate_impl()
            self.active = False

    def __enter__(self) -> Self:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- implemented by backends
    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        """Batch-1 tensor in ``input_layout``/``input_dtype`` -> output of shape (1, classes)."""
        raise NotImplementedError

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by the source model's output name. The default, for a runtime that runs one-output
        models only: its one output under the contract's (first) output name."""
        contract = self.config.contract
        return {contract.output_name if contract is not None else "output": self.infer_impl(tensor)}

    def source_output_names(self) -> list[str]:
        """The source model's output names, in its order (the contract's); [] without a contract."""
        return source_output_names(self.config)

    def source_output_name(self, names: Iterable[str], index: int) -> str:
        """The source model's name for output ``index`` among a toolchain output's tensor names (a converted
        output may carry several: the graph output's and its producer's); a set's order is no answer."""
        found = sorted(names)
        wanted = self.source_output_names()
        if index < len(wanted) and wanted[index] in found:
            return wanted[index]
        return next((n for n in found if n in wanted), found[0] if found else str(index))

    def in_source_order(self, outputs: Mapping[str, T]) -> dict[str, T]:
        """A toolchain's outputs keyed by their names in no meaningful order (MNN's session dict), in the source
        model's: the source's names by their place in it, any other after them by name (the same rule as
        ``source_output_name``, for a toolchain that gives names and no order)."""
        rank = {name: i for i, name in enumerate(self.source_output_names())}
        return dict(sorted(outputs.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))

    def deactivate_impl(self) -> None:
        pass

    def set_batch_impl(self, n: int) -> None:
        """Resize the input for batch ``n`` (only runtimes with max_batch > 1)."""

    def model_error(self, exc: Exception) -> InputError:
        """A toolchain's load error as one line naming the model file."""
        first = next(iter(self.files.values()))
        msg = str(exc).strip().splitlines()
        return InputError(f"{self.display} cannot load it: {msg[0] if msg else type(exc).__name__}", first)


def source_output_names(config: Config) -> list[str]:
    """The source model's output names, in its order (the contract's); [] without a contract. Also what a
    toolchain that runs its model outside any Runtime (RKNN's simulator) names its outputs by."""
    contract = config.contract
    if contract is None:
        return []
    return [o.name for o in contract.outputs] or [contract.output_name]


def concurrent_calls(calls: Sequence[Callable[[], object]], seconds: float) -> tuple[list[int], float]:
    """Each call run back to back in its own thread for ``seconds``: every call's ns and the wall seconds from
    the common start to the last call's end. Each thread makes one untimed call first (a fresh runtime's
    first call pays its lazy setup).

    The first call runs in the caller's thread, the others in new threads: an OpenMP toolchain (ncnn) keeps a
    thread team per calling thread, and measured here, ncnn MobileNetV2 took 10.5 ms per call from a new
    thread against 5.5 ms from the thread that had been running it (the idle team of the first spins on
    the cores the second needs). One worker is then exactly the batch-1 latency's call.
    """
    n = len(calls)
    samples: list[list[int]] = [[] for _ in range(n)]
    ends = [0] * n
    errors: list[BaseException] = []
    window = [0, 0]  # start, deadline: set once every thread is ready, before any is released

    def open_window() -> None:
        window[0] = time.perf_counter_ns()
        window[1] = window[0] + int(seconds * 1e9)

    start = threading.Barrier(n, action=open_window)

    def work(i: int) -> None:
        call, clock, out = calls[i], time.perf_counter_ns, samples[i]
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)
        start.wait()
        try:
            while not errors and (t0 := clock()) < window[1]:
                call()
                out.append(clock() - t0)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)
        ends[i] = clock()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(1, n)]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for per in samples for s in per], (max(ends) - window[0]) / 1e9
