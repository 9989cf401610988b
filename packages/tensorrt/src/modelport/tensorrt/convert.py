"""ONNX -> TensorRT engine (FP32 / FP16 / INT8) with the TensorRT 10 Python API.

The targets ``tensorrt-fp32|fp16|int8`` (modules ``tensorrt_<precision>``) all call
``Target.build``. One build path, as ``trtexec`` would do it: OnnxParser with its errors
surfaced node by node, explicit batch (the only mode in TensorRT 10), a workspace
pool limit, the builder optimisation level, an optimisation profile when the input is
dynamic, and the timing cache kept in the artifact store so rebuilds skip re-timing.

- FP16: the builder flag (weakly typed network; TensorRT picks FP16 kernels where faster).
- INT8 by ``[tensorrt] int8_mode`` (see ``int8_plan``): explicit quantization of the
  backbone's QDQ ONNX, or entropy calibration over the common calibration set with
  the calibration cache committed beside the engine.

The engine's manifest records the TensorRT version, GPU name and compute capability,
and the runtime refuses an engine built anywhere else. GPU and compute capability are
also part of the options, so the same artifacts on another GPU are rebuilt, not reused.
Without a GPU the target raises HardwareMissing (a skip) before tensorrt is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelport.common.artifacts import ArtifactStore, Job, file_inputs, sha256_file, write_atomic
from modelport.common.calibration import CalibrationSet
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import console, step, warn
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL

from . import cuda
from . import network as net
from .qdq import QDQ as QDQ_TARGET
from .runtime import TensorrtFp16Runtime, TensorrtFp32Runtime, TensorrtInt8Runtime, TensorrtRuntime

if TYPE_CHECKING:
    from .calibrator import CalibrationFeeder

SOURCE = ONNX_MODEL
RUNTIMES = {cls.precision: cls for cls in (TensorrtFp32Runtime, TensorrtFp16Runtime, TensorrtInt8Runtime)}
ENGINES = {p: cls.artifacts["engine"] for p, cls in RUNTIMES.items()}
CALIBRATION_CACHE = "tensorrt/calibration.cache"
TIMING_CACHE = "tensorrt/timing.cache"


@dataclass(frozen=True)
class Int8Plan:
    mode: str  # "qdq" | "calibrate"
    onnx: Path
    why: str | None = None  # why calibration replaced QDQ under int8_mode = "auto"


def int8_plan(ctx: StepContext) -> Int8Plan:
    """Explicit quantization when the QDQ model is one TensorRT accepts, else calibration.

    Reads only the ONNX file (no GPU), so the choice and its reason can be tested anywhere.
    """
    tcfg, store = ctx.config.tensorrt, ctx.store
    if tcfg.int8_mode == "calibrate":
        return Int8Plan("calibrate", store.path(SOURCE))
    qdq = store.path(tcfg.qdq_onnx or QDQ_TARGET.output)
    if not qdq.is_file():
        problems = ["it does not exist (run `modelport convert onnx-int8-tensorrt` first)"]
    else:
        model = net.load(qdq)
        problems = net.qdq_problems(model) if net.qdq_nodes(model) else ["it has no QuantizeLinear/DequantizeLinear nodes"]
    if not problems:
        return Int8Plan("qdq", qdq)
    why = f"{store.rel(qdq)} cannot be used for TensorRT explicit quantization: {'; '.join(problems)}"
    if tcfg.int8_mode == "qdq":
        raise InputError(f'{why}. TensorRT needs symmetric int8 Q/DQ (zero point 0); or set [tensorrt] int8_mode = "calibrate"')
    return Int8Plan("calibrate", store.path(SOURCE), why)


def origin(trt_version: str, gpu: cuda.GpuInfo) -> dict[str, Any]:
    """Where an engine is built, in the shape the runtime compares (see modelport.runtime.tensorrt.check_origin)."""
    return {"tensorrt_version": trt_version, "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability}}


def _int8_record(
    store: ArtifactStore, plan: Int8Plan | None, feeder: CalibrationFeeder | None, calib: CalibrationSet | None
) -> dict[str, Any] | None:
    if plan is None:
        return None
    out: dict[str, Any] = {"mode": plan.mode, "source": store.rel(plan.onnx), "fallback_reason": plan.why}
    if feeder is not None:
        out |= {
            "calibration": cast(CalibrationSet, calib).signature(),  # a feeder is made only with a calibration set
            "batches": feeder.batches,
            "images": feeder.images,
            "cache_reused": feeder.cache.read_from is not None and feeder.batches == 0,
        }
    return out


def _feeder(ctx: StepContext, job: Job, calib: CalibrationSet, model_input: net.ModelInput, force: bool) -> CalibrationFeeder:
    from .calibrator import CalibrationCache, CalibrationFeeder, PycudaStaging

    shape = net.profile_shapes(model_input.shape, ctx.config.input, 1)[1]  # calibration runs at batch 1
    previous = None if force else reusable_calibration_cache(ctx.store, job.inputs, job.tool_version)
    if previous:
        console.print(f"   reusing {CALIBRATION_CACHE}: same model, calibration images and TensorRT version")
    return CalibrationFeeder(
        calib.tensors(model_input.layout, "float32"),
        model_input.name,
        shape,
        PycudaStaging(ctx.config.tensorrt.device),
        CalibrationCache(job.tmp(CALIBRATION_CACHE), previous),
    )


def reusable_calibration_cache(store: ArtifactStore, inputs: dict[str, Path], tool_version: str) -> Path | None:
    """The committed calibration cache, if it was made from these inputs by this TensorRT version.

    (The engine may still need a rebuild, e.g. for another GPU: calibration scales do not.)
    """
    path, m = store.path(CALIBRATION_CACHE), store.read_manifest(CALIBRATION_CACHE)
    if not m or not path.is_file() or m.get("sha256") != sha256_file(path):
        return None
    want = {k: {"path": store.rel(p), "sha256": sha256_file(p)} for k, p in inputs.items() if Path(p).is_file()}
    return path if m.get("inputs") == want and m.get("tool", {}).get("version") == tool_version else None


def _commit_calibration(job: Job, feeder: CalibrationFeeder) -> None:
    if feeder.cache.data is None:
        raise ModelportError("TensorRT calibration produced no calibration cache")
    tmp = job.tmp(CALIBRATION_CACHE)
    if not tmp.stat().st_size:  # TensorRT read the previous cache and did not write a new one
        tmp.write_bytes(feeder.cache.data)


def _build(
    trt: Any,
    ctx: StepContext,
    precision: str,
    plan: Int8Plan | None,
    source: Path,
    model_input: net.ModelInput,
    feeder: CalibrationFeeder | None,
) -> bytes:
    from .runtime import trt_logger

    tcfg, store = ctx.config.tensorrt, ctx.store
    logger = trt_logger()
    builder = trt.Builder(logger)
    # Explicit batch is TensorRT 10's only mode (flag 0). A QDQ model is built strongly typed:
    # its Q/DQ nodes fix the precisions and precision flags must not be set (TensorRT's advice).
    strongly_typed = plan is not None and plan.mode == "qdq"
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        raise InputError(f"TensorRT's ONNX parser refused it: {_parser_errors(parser)}", source)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, tcfg.workspace_mb << 20)
    config.builder_optimization_level = tcfg.builder_optimization_level
    if precision == "fp16" or (feeder is not None and tcfg.int8_fp16_fallback):
        config.set_flag(trt.BuilderFlag.FP16)
    if feeder is not None:
        from .calibrator import entropy_calibrator

        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = entropy_calibrator(feeder)  # referenced here until the build returns
        config.int8_calibrator = calibrator
    if model_input.dynamic:
        lo, opt, hi = net.profile_shapes(model_input.shape, ctx.config.input, tcfg.max_batch)
        profile = builder.create_optimization_profile()
        profile.set_shape(model_input.name, lo, opt, hi)
        config.add_optimization_profile(profile)
        if feeder is not None:
            config.set_calibration_profile(profile)
        console.print(f"   optimisation profile for {model_input.name}: min {lo}, opt {opt}, max {hi}")

    timing_path = store.path(TIMING_CACHE)
    if tcfg.timing_cache:
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        if not config.set_timing_cache(timing, ignore_mismatch=False):
            # Made by another TensorRT version or GPU: start afresh rather than mix tactics.
            warn(f"{TIMING_CACHE} is from another TensorRT version or GPU; starting a new one")
            timing = config.create_timing_cache(b"")
            config.set_timing_cache(timing, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if feeder is not None and feeder.error is not None:
        raise ModelportError(f"TensorRT calibration stopped: {feeder.error}") from feeder.error
    if serialized is None:
        raise ModelportError(f"TensorRT could not build the {precision} engine: {logger.last_error or 'see the log above'}")
    if tcfg.timing_cache:
        write_atomic(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _parser_errors(parser: Any) -> str:
    msgs = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        where = " ".join(x for x in (_call(e, "node_name"), _call(e, "node_operator")) if x)
        msgs.append(e.desc() + (f" (node {where})" if where else ""))
    return "; ".join(msgs) or "no details given"


def _call(obj: Any, name: str) -> Any:
    # node_name()/node_operator() came with TensorRT 8.6; keep the message if a build lacks them.
    fn = getattr(obj, name, None)
    try:
        return fn() if fn else None
    except Exception:  # noqa: BLE001
        return None


class Target(Converter):
    """One engine precision as a conversion target (``TARGETS["tensorrt-fp16"]`` -> ``tensorrt:FP16``)."""

    tool = "tensorrt"

    def __init__(self, precision: str):
        self.precision = precision

    def unavailable_reason(self) -> str | None:
        return cuda.missing_layer()

    def tool_version(self) -> str:
        return f"TensorRT {cuda.tensorrt_version() or '(not installed)'}"

    def require(self, ctx: StepContext) -> None:
        cuda.require(ctx.config.tensorrt.device)  # no driver/GPU: HardwareMissing (a skip); no toolchain: ToolchainMissing

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return self.build(ctx, force)  # INT8 on the explicit-quantization path: `convert` searches (recover.py)

    def build(
        self, ctx: StepContext, force: bool, qdq: Path | None = None, engine_rel: str | None = None, gate: bool = True
    ) -> list[Path]:
        """The engine (INT8: from ``qdq`` when given, else by ``int8_plan``) at ``engine_rel`` (default
        ``tensorrt/<precision>.engine``); ``gate=False`` measures without holding it to the floors."""
        store, tcfg, precision = ctx.store, ctx.config.tensorrt, self.precision
        gpu = cuda.require(tcfg.device)
        import tensorrt as trt

        plan = (Int8Plan("qdq", qdq) if qdq else int8_plan(ctx)) if precision == "int8" else None
        source = plan.onnx if plan else store.path(SOURCE)
        model_input = net.model_input(net.load(source), source)
        calib = None
        inputs = {"onnx": source}
        if plan and plan.mode == "calibrate":
            if plan.why:
                warn(f"tensorrt-int8: {plan.why}; calibrating instead")
            calib = ctx.calibration
            calib.validate()  # every calibration image decodes before TensorRT starts
            inputs |= file_inputs("calibration", calib.paths)
        engine_rel = engine_rel or ENGINES[precision]
        outputs = {"engine": engine_rel} | ({"calibration_cache": CALIBRATION_CACHE} if calib else {})
        options = {
            "precision": precision,
            "workspace_mb": tcfg.workspace_mb,
            "builder_optimization_level": tcfg.builder_optimization_level,
            "max_batch": tcfg.max_batch,
            "int8": plan.mode if plan else None,
            "int8_fp16_fallback": tcfg.int8_fp16_fallback if calib else None,
            "gpu": gpu.name,
            "compute_capability": gpu.compute_capability,
        }

        def make(job: Job) -> dict[str, object]:
            how = precision.upper() + (f", {plan.mode}" if plan else "")
            step(
                f"build {engine_rel} from {store.rel(source)} ({how}) on {gpu.name} "
                f"(compute capability {gpu.compute_capability}), TensorRT {trt.__version__}"
            )
            feeder = _feeder(ctx, job, calib, model_input, force) if calib else None
            try:
                engine_bytes = _build(trt, ctx, precision, plan, source, model_input, feeder)
            finally:
                if feeder is not None:
                    feeder.close()
            job.tmp(engine_rel).write_bytes(engine_bytes)
            if feeder is not None:
                _commit_calibration(job, feeder)
            return {
                "tensorrt_version": trt.__version__,
                "gpu": {
                    "name": gpu.name,
                    "compute_capability": gpu.compute_capability,
                    "nvidia_driver": gpu.driver_version,
                    "driver_cuda": gpu.driver_cuda,
                },
                "input": {"name": model_input.name, "shape": list(model_input.shape), "layout": model_input.layout},
                "int8": _int8_record(store, plan, feeder, calib),
            }

        def built_here(config: Config, files: dict[str, Path]) -> TensorrtRuntime:
            runtime = RUNTIMES[precision](config, files)
            runtime.origin = origin(trt.__version__, gpu)  # built in this process: nothing to check
            return runtime

        return self.produce(
            ctx,
            force,
            outputs,
            make,
            inputs=inputs,
            options=options,
            runtime=built_here,
            kind="int8" if precision == "int8" else "float",
            gate=gate,
            tool_version=trt.__version__,
        )


FP32, FP16, INT8 = Target("fp32"), Target("fp16"), Target("int8")
