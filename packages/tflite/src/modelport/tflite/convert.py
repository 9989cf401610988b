"""`convert onnx`: the source -> ``onnx/model.onnx``, static NCHW float input, verified against the reference.

A TFLite source goes through two converters: tflite2onnx (the original project's; no
TensorFlow needed) and tf2onnx (``--inputs-as-nchw``). Both end at the configured
opset (13: per-channel QDQ needs >= 13). ``auto`` converts with both, verifies both,
times those that pass in onnxruntime and keeps the clearly faster one (the first, tflite2onnx,
when the difference is noise); a converter that fails in any way (an error, a model the ONNX
checker rejects, failed verification) is recorded with its one-line reason, and the step fails
only when none passes. A full-integer TFLite source becomes a float ONNX (tf2onnx
``--dequantize``, then dequantize.py for both), held to the INT8 floors: it is one
quantization away from the source. An ONNX source is only made static NCHW (modelport.convert.onnx_source).
A Caffe source is the caffe package's step (``caffe-onnx``), reached by name.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from functools import partial
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelport.common.agreement import gate_options
from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError, ToolchainMissing
from modelport.common.log import activity, console, run_logged, step, warn
from modelport.common.reference import reference_file
from modelport.common.registry import load
from modelport.common.schema import LatencyStats
from modelport.common.timing import MIN_GAIN, LoadWatch, clearly_faster, race
from modelport.convert.base import Converter
from modelport.convert.verify import verify
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.registry import runtime_class

OUTPUT = ONNX_MODEL
VERIFIED_BY = "onnx"  # the runtime key the ONNX model is verified and raced in (onnxruntime CPU)
CONVERTERS = ("tflite2onnx", "tf2onnx")
RACE = (10, 10, 10)  # warm-up, rounds, runs per round: enough to rank two graphs, cheap next to converting


def available_converters() -> list[str]:
    found = []
    if importlib.util.find_spec("tflite2onnx"):
        found.append("tflite2onnx")
    if importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("tensorflow"):
        found.append("tf2onnx")
    return found


def to_opset(path: Path, opset: int) -> None:
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < opset:
        model = version_converter.convert_version(model, opset)
        onnx.save(model, str(path))


def convert_tflite2onnx(ctx: StepContext, tflite: Path, out: Path) -> None:
    import tflite2onnx

    try:
        with activity("tflite2onnx conversion"):
            tflite2onnx.convert(str(tflite), str(out))
        if ctx.contract.quantized:
            dequantize(out)
        to_opset(out, ctx.config.convert.opset)
    except ModelportError:
        raise
    except Exception as e:  # tflite2onnx raises bare NotImplementedError/AssertionError/ShapeInferenceError
        msg = (str(e).strip().splitlines() or [""])[0]
        raise ModelportError(f"tflite2onnx failed: {type(e).__name__}: {msg}", tflite) from None


def convert_tf2onnx(ctx: StepContext, tflite: Path, out: Path, log: Path) -> None:
    # A subprocess: tf2onnx imports all of TensorFlow, which this process never needs. 30-70 s: its
    # chatter goes to ``log`` and progress lines show it is alive.
    contract = ctx.contract
    cmd = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--tflite",
        str(tflite),
        "--output",
        str(out),
        "--inputs-as-nchw",
        contract.input_name,
        "--opset",
        str(ctx.config.convert.opset),
    ]
    if contract.quantized:
        cmd.append("--dequantize")
    proc = run_logged(cmd, log, "tf2onnx conversion")
    if proc.returncode != 0 or not out.is_file():
        raise ModelportError(f"tf2onnx failed ({proc.returncode}): {proc.last_error} (full log: {log})", tflite)
    if contract.quantized:
        dequantize(out)


def dequantize(path: Path) -> None:
    import onnx

    from .dequantize import float_model

    onnx.save(float_model(onnx.load(str(path))), str(path))


def check_static_nchw(path: Path, ctx: StepContext) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelportError(f"onnx.checker rejected the converted model: {str(e).splitlines()[0]}", path) from None
    model = onnx.load(str(path), load_external_data=False)
    (inp,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp.type.tensor_type.shape.dim]
    expected = list(ctx.config.input.shape("NCHW"))
    if dims != expected:
        raise InputError(f"converted input {inp.name} is {dims}, expected static NCHW {expected}", path)


def _convert_one(ctx: StepContext, name: str, source: Path, out: Path) -> dict[str, Any]:
    if name == "source":
        step(f"{source.name} -> static NCHW batch-1 ONNX (opset >= {ctx.config.convert.opset})")
        from modelport.convert.onnx_source import static_nchw

        changes = static_nchw(source, out, ctx)
    else:
        step(
            f"{name}: {source.name} -> ONNX (opset {ctx.config.convert.opset})"
            + (", dequantized to float" if ctx.contract.quantized else "")
        )
        if name == "tflite2onnx":
            convert_tflite2onnx(ctx, source, out)
        else:
            convert_tf2onnx(ctx, source, out, ctx.store.path("onnx/logs/tf2onnx.log"))
        changes = None
        if ctx.contract.dynamic_batch or ctx.contract.size is None:
            from modelport.convert.onnx_source import static_nchw

            changes = static_nchw(out, out, ctx, layout="NCHW")
    check_static_nchw(out, ctx)
    agreement = verify(ctx, runtime_class(VERIFIED_BY)(ctx.config, {"model": out}), "float", ctx.store.path(OUTPUT))
    return {"agreement": agreement.model_dump(exclude={"per_image"}) if agreement else None} | (
        {"changes": changes} if changes else {}
    )


def convert_contained(ctx: StepContext, names: list[str], source: Path, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run each converter; a crash or failed verification is its one-line reason, never the step's end.

    Returns (measured, failed): name -> manifest record / name -> reason. Raises when none passed.
    """
    measured, failed = {}, {}
    for n in names:
        try:
            measured[n] = _convert_one(ctx, n, source, workdir / f"{n}.onnx")
        except ModelportError as e:
            failed[n] = e.message
        except Exception as e:  # a converter's model can break onnx, onnxruntime or numpy in ways no list foresees
            failed[n] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        if n in failed and len(names) > 1:
            warn(f"{n}: {failed[n]}")
    if not measured:
        raise ModelportError(
            "no converter made a model that passes: " + "; ".join(f"{n}: {r}" for n, r in failed.items()), source
        )
    return measured, failed


def time_candidates(ctx: StepContext, models: dict[str, Path]) -> tuple[dict[str, LatencyStats], dict[str, list[float]]]:
    """Time candidate ONNX models in alternating rounds, so background load hits them alike.

    Returns each one's stats and its median ms per round (for ``pick``'s paired comparison).
    """
    x = np.zeros(ctx.config.input.shape("NCHW"), "float32")
    runtimes = {n: runtime_class(VERIFIED_BY)(ctx.config, {"model": p}).activate() for n, p in models.items()}
    per_round: dict[str, list[float]] = {}
    try:
        stats = race({n: partial(rt.infer, x) for n, rt in runtimes.items()}, *RACE, per_round=per_round)
    finally:
        for rt in runtimes.values():
            rt.deactivate()
    return stats, per_round


def pick(per_round: dict[str, list[float]]) -> tuple[str, str]:
    """The candidate to keep and why: the first (preferred) one unless another is clearly faster
    (``clearly_faster``: MIN_GAIN on the median and in all but one paired round)."""
    names = list(per_round)
    chosen = names[0]
    for n in names[1:]:
        if clearly_faster(per_round[n], per_round[chosen]):
            chosen = n
    if chosen != names[0] or all(clearly_faster(per_round[chosen], per_round[n]) for n in names[1:]):
        return chosen, "clearly the faster verified ONNX in onnxruntime"
    return chosen, f"within noise of the others (not {MIN_GAIN:.0%} faster in all but one round): the preferred converter"


class TfliteOnnx(Converter):
    """Each candidate converter's model is verified on its own (``_convert_one``); the step keeps one that passed."""

    def unavailable_reason(self) -> str | None:
        if not importlib.util.find_spec("onnx") or not importlib.util.find_spec("onnxruntime"):
            return "onnx and onnxruntime are needed (tf-onnx env)"
        return None if available_converters() else "neither tflite2onnx nor tf2onnx (+tensorflow) is installed"

    def tool_version(self) -> str:
        return ", ".join(f"{c} {version(c)}" for c in available_converters()) or "none"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        cfg, contract = ctx.config, ctx.contract
        if contract.kind == "caffe":
            steps = {ep.name: ep.value for ep in entry_points(group="modelport.steps")}
            if "caffe-onnx" not in steps:
                raise ToolchainMissing("a Caffe source is converted by the caffe package (tf-onnx env), not installed here")
            return cast(list[Path], load(steps, "caffe-onnx", "conversion step").convert(ctx, force))
        choice = cfg.convert.onnx_converter
        if contract.kind == "onnx":
            names = ["source"]
        elif choice == "auto":
            names = available_converters()
        elif choice not in available_converters():
            raise ToolchainMissing(f"converter {choice} is not installed in this env")
        else:
            names = [choice]
        source = ctx.store.path(contract.file)

        def make(job: Job) -> dict[str, object]:
            measured, failed = convert_contained(ctx, names, source, job.workdir)
            models = {n: job.workdir / f"{n}.onnx" for n in measured}
            race_load: dict[str, object] = {}
            if len(models) > 1:
                watch = LoadWatch()
                stats, per_round = time_candidates(ctx, models)
                load, under_load = watch.finish()
                race_load = {"race_load_avg": load, "race_under_load": under_load}
                if under_load:
                    warn(f"converter race {under_load}; its timings are not trustworthy")
                for n, st in stats.items():
                    measured[n] |= {"median_ms": st.median, "p90_ms": st.p90, "runs": st.runs}
                    console.print(
                        f"   {n}: onnxruntime median {st.median:.2f} ms, p90 {st.p90:.2f} ms ({st.runs} runs, interleaved)"
                    )
                chosen, why = pick(per_round)
                console.print(f"   keeping {chosen}: {why}", markup=False)
            else:
                chosen = next(iter(measured))
                if failed:
                    console.print(f"   keeping {chosen}: the only converter that passed", markup=False)
            shutil.copyfile(job.workdir / f"{chosen}.onnx", job.tmp())
            return {"converter": chosen, "converters": measured, "failed_converters": failed, **race_load}

        return self.produce(
            ctx,
            force,
            {"model": OUTPUT},
            make,
            inputs={"source": source, "reference": ctx.store.path(reference_file(cfg))},
            options={
                "converter": choice if contract.kind == "tflite" else "source",
                "opset": cfg.convert.opset,
                "verify": cfg.convert.verify,
                "input": cfg.input.signature,
                **gate_options(cfg, "float"),
            },
            runtime=None,
            tool="+".join(names),
        )


TARGET = TfliteOnnx()
