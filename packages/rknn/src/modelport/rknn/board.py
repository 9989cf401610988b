"""`rknn board`: the INT8 model on a real Rockchip NPU, two ways, both writing the common result schema.

- From a host over adb (``--target-device SERIAL``): rknn-toolkit2 ``load_rknn`` +
  ``init_runtime(target=<platform>, device_id=...)``, outputs on the eval images,
  host-side latency (includes the adb transfer: the toolkit's ``eval_perf`` gives the
  NPU's own time, recorded beside it) and ``eval_memory``. -> results/rknn-int8-board.json
- On the board itself (``--lite``): rknn-toolkit-lite2's ``RKNNLite`` (aarch64 only,
  needs the board's librknnrt), timed like every other runtime. -> results/rknn-int8-lite.json

Without a board either way is recorded as skipped with the reason, never faked. The
toolkit starts its bundled adb server to look for devices; it is stopped by PID after.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelport.common.backends import Backend, backends
from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, InputError, ModelportError
from modelport.common.log import console, skip, step
from modelport.common.preprocess import to_tensor
from modelport.common.results import headline_index, write_result
from modelport.common.schema import BackendResult, LayerProfile, ThroughputPoint
from modelport.common.timing import LoadWatch, concurrency_levels, measure, throughput_summary
from modelport.runtime.base import concurrent_calls
from modelport.runtime.run import prepared_images

from . import build, convert, simulate, toolkit

BOARD, LITE = backends()["rknn-int8-board"], backends()["rknn-int8-lite"]
NO_DEVICE = "no Rockchip board (connect one over adb: --target-device SERIAL|auto; on the board: `rknn board --lite`)"


def lite_unavailable_reason() -> str | None:
    if platform.machine() not in ("aarch64", "arm64"):
        return f"rknn-toolkit-lite2 runs on the board itself (aarch64 with librknnrt), this is {platform.machine()}"
    if importlib.util.find_spec("rknnlite") is None:
        return "rknn-toolkit-lite2 is not installed (on the board: pip install rknn-toolkit-lite2)"
    return None


def core_mask(cls: Any, name: str) -> int:
    return cast(
        int,
        {
            "auto": cls.NPU_CORE_AUTO,
            "0": cls.NPU_CORE_0,
            "1": cls.NPU_CORE_1,
            "2": cls.NPU_CORE_2,
            "0_1": cls.NPU_CORE_0_1,
            "0_1_2": cls.NPU_CORE_0_1_2,
            "all": cls.NPU_CORE_ALL,
        }[name],
    )


# NPU cores per chip (rknn-toolkit-lite2's core masks address them one by one); the others have one.
NPU_CORES = {"rk3588": 3, "rk3576": 2}


def lite_throughput(ctx: StepContext, model: Path, tensor: np.ndarray) -> list[ThroughputPoint]:
    """RKNN's own concurrency on the board: an RKNNLite per worker, each pinned to its own NPU core by its core
    mask (workers beyond the chip's cores share them round-robin), inferring in its own thread."""
    from rknnlite.api import RKNNLite  # only on the board

    cores = NPU_CORES.get(ctx.config.rknn.target_platform, 1)
    points = []
    for n in concurrency_levels(ctx.config.bench.concurrency):
        lites: list[Any] = []
        try:
            for i in range(n):
                lite = RKNNLite(verbose=False)
                lites.append(lite)
                mask = core_mask(RKNNLite, str(i % cores)) if cores > 1 else RKNNLite.NPU_CORE_AUTO
                if lite.load_rknn(str(model)) != 0 or lite.init_runtime(core_mask=mask) != 0:
                    raise ModelportError(f"RKNNLite could not start a runtime for worker {i + 1} of {n}", model)
            calls = [partial(lite.inference, inputs=[tensor], data_format=["nhwc"]) for lite in lites]
            samples, wall = concurrent_calls(calls, ctx.config.bench.throughput_seconds)
        finally:
            for lite in lites:
                lite.release()
        on = f"NPU cores 0-{cores - 1} by core mask" if cores > 1 else "the NPU (one core)"
        points.append(throughput_summary(samples, wall, n, f"{n} RKNNLite runtime{'s' if n > 1 else ''} on {on}", None))
    return points


def _skipped(ctx: StepContext, b: Backend, reason: str) -> BackendResult:
    result = simulate.result_base(ctx, b, "npu", "skipped", reason)
    result.latency_note = "not measured: " + reason
    write_result(ctx.store, result)
    skip(f"{b.key}: {reason}")
    return result


def _measure(ctx: StepContext, result: BackendResult, infer: Callable[[np.ndarray], list[Any]], model: Path) -> convert.Outputs:
    """Outputs on every eval image (a detector's every output, by the source's names), then warm-up + timed
    runs on the headline image (as `modelport bench`)."""
    cfg = ctx.config
    tensors = [to_tensor(a, cfg.input, "NHWC", "uint8") for a in prepared_images(ctx)]
    outputs: convert.Outputs
    if cfg.detector is not None:
        outputs = [convert.source_named(ctx, infer(t), model) for t in tensors]
    else:
        outputs = np.stack([np.asarray(infer(t)[0], dtype=np.float32).reshape(-1) for t in tensors])
    head = tensors[headline_index(ctx)]
    load = LoadWatch()
    result.latency_ms = measure(lambda: infer(head), cfg.bench.warmup, cfg.bench.runs)
    result.load_avg, result.under_load = load.finish()
    return outputs


def _finish(ctx: StepContext, result: BackendResult, outputs: convert.Outputs) -> BackendResult:
    model = ctx.store.path(convert.MODELS["int8"])
    result.artifact, result.size_bytes = ctx.store.rel(model), model.stat().st_size
    write_result(ctx.store, result, simulate.fill(ctx, result, outputs))
    lat = result.latency_ms
    console.print(f"   {simulate.summary(result)}" + (f"; median {lat.median:.2f} ms" if lat else ""))
    return result


def run_adb(ctx: StepContext, device: str | None, verbose: bool = False) -> BackendResult:
    """Host + board over adb. ``device``: adb serial, 'auto' (the only one connected) or None (skip)."""
    if not device:
        return _skipped(ctx, BOARD, NO_DEVICE)
    built = build.run(ctx, "int8", verbose=verbose)  # the board runs the exported model, not a rebuild
    rc, log = ctx.config.rknn, convert.log_path(ctx, "board")
    step(f"rknn board: {built.model.name} on {rc.target_platform} ({device})")
    result = simulate.result_base(ctx, BOARD, f"npu ({rc.target_platform}, adb {device})")
    with toolkit.adb_guard():
        with toolkit.session(log, ctx.store.path("rknn"), verbose) as rk:
            found = toolkit.call(rk.list_devices, what="list_devices", log=log)
            serials = [s for group in (found or ()) for s in (group or ())]
            if not serials or (device != "auto" and device not in serials):
                return _skipped(ctx, BOARD, f"{NO_DEVICE} (adb sees: {', '.join(serials) or 'nothing'})")
            device_id = None if device == "auto" else device
            toolkit.call(rk.load_rknn, str(built.model), what="load_rknn", log=log, path=built.model)
            toolkit.call(
                rk.init_runtime,
                target=rc.target_platform,
                device_id=device_id,
                perf_debug=False,
                core_mask=core_mask(type(rk), rc.core_mask),
                what="init_runtime",
                log=log,
                path=built.model,
            )
            outputs = _measure(ctx, result, lambda t: rk.inference(inputs=[t], data_format=["nhwc"]), built.model)
            result.latency_note = "host-side: includes the adb transfer; NPU time in settings.eval_perf"
            # eval_perf's per-layer table comes with perf_debug=True, which slows the timed runs: not taken here
            result.layer_profile = LayerProfile(reason="per-layer NPU time needs init_runtime(perf_debug=True); not run")
            try:
                result.settings["eval_perf"] = rk.eval_perf(is_print=False)
            except Exception as e:  # an old board runtime without perf support: keep the measured outputs
                result.notes.append(f"eval_perf failed: {e}")
        with toolkit.session(log, ctx.store.path("rknn"), verbose) as rk:  # eval_mem=True slows inference: own runtime
            toolkit.call(rk.load_rknn, str(built.model), what="load_rknn", log=log, path=built.model)
            toolkit.call(
                rk.init_runtime,
                target=rc.target_platform,
                device_id=device_id,
                eval_mem=True,
                what="init_runtime(eval_mem)",
                log=log,
                path=built.model,
            )
            try:
                result.settings["eval_memory"] = rk.eval_memory(is_print=False)
            except Exception as e:
                result.notes.append(f"eval_memory failed: {e}")
    result.tool_versions = toolkit.versions()
    return _finish(ctx, result, outputs)


def check_rknn_file(ctx: StepContext, model: Path) -> None:
    """The exported model is checked before any runtime reads it: present, unchanged, an RKNN file."""
    if not model.is_file():
        raise ModelportError("no RKNN model: run `modelport rknn convert` on a host and copy artifacts/rknn here", model)
    ctx.store.check_unchanged(model)
    with open(model, "rb") as f:
        if f.read(4) != b"RKNN":
            raise InputError("not an RKNN model (no 'RKNN' header): corrupt, or another format under a .rknn name", model)


def run_lite(ctx: StepContext) -> BackendResult:
    """On the board: RKNNLite on the exported INT8 model (copy artifacts/ over, run, copy results/ back)."""
    model = ctx.store.path(convert.MODELS["int8"])
    check_rknn_file(ctx, model)  # before the board check: a bad file is an error anywhere
    reason = lite_unavailable_reason()
    if reason:
        return _skipped(ctx, LITE, reason)
    from rknnlite.api import RKNNLite  # only on the board

    step(f"rknn board --lite: {model.name} with RKNNLite")
    result = simulate.result_base(ctx, LITE, f"npu ({platform.node()})")
    lite = RKNNLite(verbose=False)
    try:
        if lite.load_rknn(str(model)) != 0:
            raise ModelportError("RKNNLite.load_rknn failed (a model built for another target_platform?)", model)
        if lite.init_runtime(core_mask=core_mask(RKNNLite, ctx.config.rknn.core_mask)) != 0:
            raise HardwareMissing("RKNNLite.init_runtime failed: no NPU driver / librknnrt on this machine")
        outputs = _measure(ctx, result, lambda t: lite.inference(inputs=[t], data_format=["nhwc"]), model)
    except HardwareMissing as e:
        lite.release()
        return _skipped(ctx, LITE, str(e))
    except BaseException:
        lite.release()
        raise
    lite.release()  # before the throughput runs: each core then has only their runtimes
    if ctx.config.bench.throughput:
        head = to_tensor(prepared_images(ctx)[headline_index(ctx)], ctx.config.input, "NHWC", "uint8")
        try:
            result.throughput = lite_throughput(ctx, model, head)
        except ModelportError as e:
            result.notes.append(f"throughput not measured: {e}")
    from importlib.metadata import version

    result.tool_versions = {"rknn-toolkit-lite2": version("rknn-toolkit-lite2")}
    result.settings = {"core_mask": ctx.config.rknn.core_mask}
    result.layer_profile = LayerProfile(reason="RKNNLite has no per-layer timing (rknn-toolkit2's eval_perf over adb has)")
    return _finish(ctx, result, outputs)
