"""One descriptor per backend: what the registries, the report, the depth tools and CI derive from.

A backend is a row of the report: a key (results/<key>.json and the CLI name), the env
whose toolchain runs it, its precision (which accuracy floors apply), where it sorts,
its FP32 twin if it is INT8, the runtime class that runs it, the conversion target
that makes it and its per-layer INT8 analysis (``"module:Name"`` strings, imported only
when used), and the knobs `modelport depth tune` searches (config keys -> the values to try).

The built-in backends are the table below. A package adds its own through the
``modelport.backends`` entry-point group (a list of Backend), the way it adds CLI
commands through ``modelport.commands``: a new toolchain is its own package plus an env.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

Floors = Literal["float", "int8"]
# A tuning knob's values: 1, 2 and this machine's core count (resolved where the search runs).
# The first knob with these values is the backend's thread count, which the depth sweeps vary too.
THREADS = "threads"


@dataclass(frozen=True)
class Backend:
    key: str
    display: str
    env: str  # the toolchain env (envs/<env>) whose steps make and measure it
    precision: str  # fp32 / fp16 / int8
    rank: int  # where its row sorts in the report (the source model first)
    runtime: str | None = None  # "module:Class", a modelport.runtime Runtime; None: its env's own step writes the row
    target: str | None = None  # "module[:obj]" conversion target of the same name
    fp32_twin: str | None = None  # an INT8 backend's float counterpart (speed and per-layer comparison)
    batch_twin: str | None = None  # "module:Class" of the dynamic-batch runtime the depth sweeps use
    depth: bool = False  # takes part in `modelport depth` (tuning, sweeps, harness overhead)
    needs: str | None = None  # "gpu" / "board": hardware this machine may lack (then a skipped row, with its reason)
    source: bool = False  # the source model's own runtime: the reference row
    default_row: bool = True  # made by its env's default steps (`nox -s convert bench rknn`): CI expects it
    # `depth tune`'s search space: config key -> values (or THREADS), in the order the knobs are tried
    tuning: Mapping[str, Sequence[Any]] = field(default_factory=dict, hash=False)
    numeric: tuple[str, ...] = ()  # knobs whose non-default values can change the outputs: kept only above the floors
    analysis: str | None = None  # "module:NAME" of its per-layer INT8 analysis (`modelport analyze <key>` in its env)

    @property
    def thread_knob(self) -> str | None:
        return next((k for k, v in self.tuning.items() if v == THREADS), None)

    @property
    def floors(self) -> Floors:
        return "int8" if "int8" in self.precision else "float"  # a hybrid (int8+fp16) is held to the INT8 floors


_B, _R = "modelport.runtime", "modelport.convert"
_TFLITE = {"tflite.threads": THREADS, "tflite.xnnpack": (True, False)}
_ORT = {
    "onnxruntime.intra_op_threads": THREADS,
    "onnxruntime.graph_optimization_level": ("basic", "extended", "all"),
    "onnxruntime.execution_mode": ("sequential", "parallel"),
    "onnxruntime.inter_op_threads": THREADS,
}
# ncnn's lightmode is not here: it frees intermediate blobs early (memory, not speed) and modelport
# does not expose it as a setting.
_NCNN = {
    "ncnn.threads": THREADS,
    "ncnn.packing_layout": (True, False),
    "ncnn.winograd": (True, False),
    "ncnn.sgemm": (True, False),
    "ncnn.fp16_storage": (False, True),
    "ncnn.fp16_packed": (False, True),
    "ncnn.fp16_arithmetic": (False, True),
}
_ORT_NUMERIC = ("onnxruntime.graph_optimization_level",)
_NCNN_NUMERIC = ("ncnn.fp16_storage", "ncnn.fp16_packed", "ncnn.fp16_arithmetic")
BUILTIN: tuple[Backend, ...] = (
    Backend(
        "tflite",
        "TFLite FP32",
        "tf-onnx",
        "fp32",
        0,
        f"{_B}.tflite:TfliteRuntime",
        source=True,
        batch_twin=f"{_B}.tflite:TfliteDynamicRuntime",
        depth=True,
        tuning=_TFLITE,
    ),
    Backend("onnx-source", "ONNX FP32 (source)", "tf-onnx", "fp32", 1, f"{_B}.onnxruntime:OnnxSourceRuntime", source=True),
    Backend(
        "onnx",
        "ONNX FP32",
        "tf-onnx",
        "fp32",
        10,
        f"{_B}.onnxruntime:OnnxFp32Runtime",
        f"{_R}.tflite_onnx:TARGET",
        batch_twin=f"{_B}.onnxruntime:OnnxFp32DynamicRuntime",
        depth=True,
        tuning=_ORT,
        numeric=_ORT_NUMERIC,
    ),
    Backend(
        "onnx-int8",
        "ONNX INT8",
        "tf-onnx",
        "int8",
        11,
        f"{_B}.onnxruntime:OnnxInt8Runtime",
        f"{_R}.onnx_int8:ORT",
        fp32_twin="onnx",
        batch_twin=f"{_B}.onnxruntime:OnnxInt8DynamicRuntime",
        depth=True,
        tuning=_ORT,
        numeric=_ORT_NUMERIC,
        analysis=f"{_R}.analyze:ONNX_INT8",
    ),
    Backend(
        "tensorrt-fp32",
        "TensorRT FP32",
        "tensorrt",
        "fp32",
        20,
        f"{_B}.tensorrt:TensorrtFp32Runtime",
        f"{_R}.tensorrt:FP32",
        needs="gpu",
    ),
    Backend(
        "tensorrt-fp16",
        "TensorRT FP16",
        "tensorrt",
        "fp16",
        21,
        f"{_B}.tensorrt:TensorrtFp16Runtime",
        f"{_R}.tensorrt:FP16",
        needs="gpu",
    ),
    Backend(
        "tensorrt-int8",
        "TensorRT INT8",
        "tensorrt",
        "int8",
        22,
        f"{_B}.tensorrt:TensorrtInt8Runtime",
        f"{_R}.tensorrt:INT8",
        fp32_twin="tensorrt-fp32",
        needs="gpu",
        analysis=f"{_R}.analyze:TENSORRT_INT8",
    ),
    Backend(
        "ncnn",
        "NCNN FP32",
        "ncnn",
        "fp32",
        30,
        f"{_B}.ncnn:NcnnRuntime",
        f"{_R}.ncnn:TARGET",
        depth=True,
        tuning=_NCNN,
        numeric=_NCNN_NUMERIC,
    ),
    Backend(
        "ncnn-int8",
        "NCNN INT8",
        "ncnn",
        "int8",
        31,
        f"{_B}.ncnn:NcnnInt8Runtime",
        f"{_R}.ncnn_int8:TARGET",
        fp32_twin="ncnn",
        depth=True,
        tuning=_NCNN,
        numeric=_NCNN_NUMERIC,
        analysis=f"{_R}.analyze:NCNN_INT8",
    ),
    # RKNN rows are written by `rknn all` (simulator, board), not by `bench`: no runtime here.
    Backend("rknn-int8", "RKNN INT8 (simulator)", "rknn", "int8", 40, analysis="modelport.rknn.layers:run"),
    Backend("rknn-fp16", "RKNN FP16 (simulator)", "rknn", "fp16", 41, default_row=False),
    Backend("rknn-int8-hybrid", "RKNN INT8 hybrid (simulator)", "rknn", "int8+fp16", 42, default_row=False),
    Backend("rknn-int8-board", "RKNN INT8 (board via adb)", "rknn", "int8", 43, needs="board"),
    Backend("rknn-int8-lite", "RKNN INT8 (board, RKNNLite)", "rknn", "int8", 44, needs="board"),
)


@cache
def backends() -> dict[str, Backend]:
    """Every backend by key, in report order: the built-in table plus those installed packages register."""
    found = list(BUILTIN)
    for ep in entry_points(group="modelport.backends"):
        found += list(ep.load())
    keys = [b.key for b in found]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise RuntimeError(f"backend keys registered twice: {', '.join(dup)}")
    return {b.key: b for b in sorted(found, key=lambda b: (b.rank, b.key))}


def get(key: str) -> Backend | None:
    return backends().get(key)


def rank(key: str) -> int:
    """Report position of ``key``; rows of backends this install does not know sort last."""
    b = get(key)
    return b.rank if b is not None else 10**6


def floors_of(key: str, precision: str | None = None) -> Floors:
    """Which floors a row is held to: its descriptor's, else (a row from a backend not installed here) its precision's."""
    b = get(key)
    return b.floors if b is not None else ("int8" if "int8" in (precision or "") else "float")


def catalogue() -> dict[str, dict]:
    """The descriptors as plain data (the report's JSON carries it, so CI and other tools need no install)."""
    return {k: asdict(b) | {"floors": b.floors} for k, b in backends().items()}
