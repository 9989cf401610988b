"""`rknn convert`: ONNX -> ``rknn/model.rknn`` (INT8) and ``rknn/model-fp16.rknn``, verified in the simulator.

rknn-toolkit2's x86 simulator cannot run an exported ``.rknn`` (``load_rknn`` then
``init_runtime()`` returns -1), so the model is verified from the same in-memory build
that is exported: build -> simulate the eval images -> export, then the Converter base
compares the simulator's outputs with the reference (the source model's) and gates before
anything is committed (``RknnConverter``). The simulator outputs are kept beside the model
(``*.eval.npy``) so `rknn simulate` writes its result without building again (an mmse
build takes ~100 s).

Everything a user can get wrong is checked before the toolkit (and torch) starts: the
target platform (config validation), the ONNX (exists, static NCHW of the configured
size), the calibration images (decoded up front).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from modelport.common.agreement import compare, gate_options
from modelport.common.artifacts import COMPANIONS, Job, file_inputs
from modelport.common.context import StepContext
from modelport.common.contract import SOURCES
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import console, step
from modelport.common.preprocess import to_tensor
from modelport.common.reference import load_detect_reference, load_reference, reference_file
from modelport.common.schema import Agreement
from modelport.runtime.base import ONNX_MODEL, source_output_names
from modelport.runtime.converter import MADE, Converter, Made
from modelport.runtime.run import placements, prepared_images
from modelport.tasks.detect.judge import judge

from . import toolkit
from .dataset import write_dataset

ONNX = ONNX_MODEL
Kind = Literal["int8", "fp16", "hybrid"]
BuildKind = Literal["int8", "fp16"]  # what `run` builds; hybrid is its own step (hybrid.py)
MODELS: dict[str, str] = {"int8": "rknn/model.rknn", "fp16": "rknn/model-fp16.rknn", "hybrid": "rknn/model-hybrid.rknn"}


def eval_outputs_path(kind: str) -> str:
    """The simulator's outputs on the eval images, kept beside the model they came from."""
    return MODELS[kind].removesuffix(".rknn") + ".eval.npy"


def log_path(ctx: StepContext, name: str) -> Path:
    return ctx.store.path(f"rknn/logs/{name}.log")


# -- checks that need no toolkit ------------------------------------------------------------------
def check_onnx(ctx: StepContext) -> Path:
    """The ONNX exists and has one static NCHW input of the configured size (what load_onnx needs)."""
    path = ctx.store.path(ONNX)
    if not path.is_file():
        raise InputError("no ONNX model: run `modelport convert onnx` (tf-onnx env) first", path)
    try:
        import onnx
    except ImportError:  # the toolkit needs onnx anyway; without it the build would fail later
        return path
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError/ValidationError/OSError for a damaged file
        raise InputError(f"not a readable ONNX model: {type(e).__name__}: {e}", path) from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise InputError(f"RKNN conversion expects one image input, the model has {len(inputs)}", path)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inputs[0].type.tensor_type.shape.dim]
    want = list(ctx.config.input.shape("NCHW"))
    if dims != want:
        hint = " (NHWC? export with an NCHW input)" if dims[-1:] == [3] else ""
        hint += (
            " (dynamic dims: rknn-toolkit2 needs a static shape)" if any(not isinstance(d, int) or d == 0 for d in dims) else ""
        )
        raise InputError(f"input {inputs[0].name!r} is {dims}, RKNN needs static NCHW {want}{hint}", path)
    return path


def preflight(ctx: StepContext, kind: Kind) -> Path:
    """All user-fixable errors, before the toolkit is imported. Returns the ONNX path."""
    ctx.config  # noqa: B018 - a bad target platform or option fails here, at config validation
    onnx_path = check_onnx(ctx)
    if kind != "fp16":
        ctx.calibration.validate()  # a missing/unreadable calibration image is named now, not mid-build
    toolkit.require()
    return onnx_path


# -- building ------------------------------------------------------------------------------------
def rknn_config(ctx: StepContext) -> dict[str, Any]:
    """RKNN.config() arguments: normalisation from [input] (the model normalises uint8 pixels), the rest from [rknn]."""
    spec, rc = ctx.config.input, ctx.config.rknn
    return {
        "mean_values": [spec.mean_values],
        "std_values": [spec.std_values],
        "target_platform": rc.target_platform,
        "quantized_dtype": rc.quantized_dtype,
        "quantized_algorithm": rc.quantized_algorithm,
        "quantized_method": rc.quantized_method,
        "optimization_level": rc.optimization_level,
    }


def options(ctx: StepContext, kind: Kind) -> dict[str, Any]:
    """What the manifest records (and what invalidates the cached model when it changes)."""
    opts = {
        **rknn_config(ctx),
        "do_quantization": kind != "fp16",
        "loaded_from": "onnx" if caffe_source(ctx) is None else "caffe",
        "preprocessing": ctx.config.input.signature,
        "eval_images": [p.name for p in ctx.eval_images],
        **gate_options(ctx.config, "float" if kind == "fp16" else "int8"),
    }
    if kind == "fp16":
        for k in ("quantized_dtype", "quantized_algorithm", "quantized_method"):
            opts.pop(k)
    else:
        opts["calibration"] = ctx.calibration.signature()
    return opts


def caffe_source(ctx: StepContext) -> tuple[Path, Path] | None:
    """A Caffe source's .prototxt and .caffemodel when the toolkit reads them itself ([rknn] load_caffe)."""
    contract = ctx.config.contract
    if contract is None or contract.kind != "caffe" or not ctx.config.rknn.load_caffe:
        return None
    prototxt, weights = ctx.store.path(SOURCES["caffe"]), ctx.store.path(COMPANIONS["caffe"][0])
    for path in (prototxt, weights):
        if not path.is_file():
            raise InputError("the Caffe source is not in the artifacts: run `modelport fetch` first", path)
    return prototxt, weights


def inputs(ctx: StepContext, onnx_path: Path, kind: Kind) -> dict[str, Path]:
    caffe = caffe_source(ctx)
    files = {"onnx": onnx_path} if caffe is None else {"prototxt": caffe[0], "caffemodel": caffe[1]}
    if ctx.config.convert.verify:
        files["reference"] = ctx.store.path(reference_file(ctx.config))
    if kind != "fp16":  # calibration content, not only names: an edited image re-quantizes
        files |= file_inputs("calibration", ctx.calibration.paths)
    return files


def load_and_config(rk: Any, ctx: StepContext, onnx_path: Path, log: Path, **extra: Any) -> None:
    """config (``rknn_config``, and ``extra`` RKNN.config arguments) and load the source."""
    toolkit.call(rk.config, what="config", log=log, path=onnx_path, **rknn_config(ctx), **extra)
    caffe = caffe_source(ctx)
    if caffe is None:
        toolkit.call(rk.load_onnx, str(onnx_path), what="load_onnx", log=log, path=onnx_path)
    else:  # it logs "E RKNN: Unkown op target: 0" for some layers and loads them all
        toolkit.call(rk.load_caffe, model=str(caffe[0]), blobs=str(caffe[1]), what="load_caffe", log=log, path=caffe[0])


def build(rk: Any, ctx: StepContext, onnx_path: Path, kind: Kind, workdir: Path, log: Path, auto_hybrid: bool = False) -> float:
    """config + load_onnx + build in ``rk``; returns the build seconds. ``auto_hybrid``: the toolkit keeps in float16
    the layers whose own cosine falls below [rknn] auto_hybrid_cos_thresh (build(auto_hybrid=True))."""
    extra = {"auto_hybrid_cos_thresh": ctx.config.rknn.auto_hybrid_cos_thresh} if auto_hybrid else {}
    load_and_config(rk, ctx, onnx_path, log, **extra)
    dataset = write_dataset(ctx.calibration, workdir / "calibration") if kind != "fp16" else None
    t0 = time.monotonic()
    toolkit.call(
        rk.build,
        what="build",
        log=log,
        path=onnx_path,
        do_quantization=kind != "fp16",
        dataset=str(dataset) if dataset else None,
        **({"auto_hybrid": True} if auto_hybrid else {}),
    )
    return time.monotonic() - t0


# What a build's simulation gives: a classifier's [N, C], or a detector's every output by name per image.
Outputs = np.ndarray | list[dict[str, np.ndarray]]


def source_named(ctx: StepContext, arrays: Sequence[Any], what: Path) -> dict[str, np.ndarray]:
    """The toolkit's outputs of one inference (a list: it gives no names) under the source model's output names,
    in the shapes the source declares. RKNN keeps the order of the model it loaded: the ONNX graph's outputs, or
    a Caffe net's unconnected blobs (the order OpenCV, and so the contract, lists them in). Each output is checked
    against its place by size; a model whose outputs it then cannot tell apart is refused, never guessed."""
    contract = ctx.config.contract
    declared = [(o.name, o.shape) for o in contract.outputs] if contract is not None else []
    names = source_output_names(ctx.config)
    shapes: list[list[int | str] | None] = [next((s for n, s in declared if n == name), None) for name in names]
    got = [np.asarray(a, dtype=np.float32) for a in arrays]
    if len(got) != len(names):
        raise ModelportError(f"the RKNN model gives {len(got)} outputs, the source {len(names)} ({', '.join(names)})", what)

    def size(shape: list[int | str] | None) -> int | None:
        static = [d for d in shape or [] if isinstance(d, int) and d > 0]
        return int(np.prod(static)) if shape and len(static) == len(shape) else None

    def fits(arr: np.ndarray, shape: list[int | str] | None) -> bool:
        return size(shape) in (None, arr.size)

    places = range(len(got))
    source_of = list(places)  # the toolkit's output k is the source's output source_of[k]
    if not all(fits(got[k], shapes[k]) for k in places):  # not by place: each by the one source size that fits it
        source_of = [only[0] if len(only := [i for i in places if fits(got[k], shapes[i])]) == 1 else -1 for k in places]
        if sorted(source_of) != list(places):
            sizes = ", ".join(str(a.size) for a in got)
            raise ModelportError(f"cannot tell the RKNN outputs (sizes {sizes}) apart as the source's {names} {shapes}", what)
    named: dict[str, np.ndarray] = {}
    for i, k in sorted(zip(source_of, places, strict=True)):
        shape = shapes[i]
        named[names[i]] = got[k].reshape([int(d) for d in shape]) if shape is not None and size(shape) is not None else got[k]
    return named


def run_simulator(rk: Any, ctx: StepContext, log: Path, what: Path) -> Outputs:
    """Simulator outputs of the model built in ``rk`` on the eval images (uint8 NHWC in): a classifier's [N, C],
    a detector's every output by the source's names per image."""
    toolkit.call(rk.init_runtime, what="init_runtime (simulator)", log=log, path=what)
    outs = []
    for arr in prepared_images(ctx):
        tensor = to_tensor(arr, ctx.config.input, "NHWC", "uint8")
        res = toolkit.call(rk.inference, inputs=[tensor], data_format=["nhwc"], what="inference (simulator)", log=log, path=what)
        if not res:
            raise InputError("rknn-toolkit2 simulator returned no output", what)
        outs.append(res)
    if ctx.config.detector is not None:
        return [source_named(ctx, res, what) for res in outs]
    return np.stack([np.asarray(res[0], dtype=np.float32).reshape(-1) for res in outs])


def save_outputs(path: Path, outputs: Outputs) -> None:
    """A build's simulator outputs beside it: a classifier's [N, C] as is; a detector's as one record per
    image with a field per output (by name, in the source's order), so the file says what each array is."""
    if isinstance(outputs, np.ndarray):
        np.save(path, outputs, allow_pickle=False)
        return
    first = outputs[0]
    dtype = np.dtype([(name, np.float32, arr.shape) for name, arr in first.items()])
    records = np.zeros(len(outputs), dtype)
    for i, out in enumerate(outputs):
        for name in first:
            records[i][name] = out[name]
    np.save(path, records, allow_pickle=False)


def load_outputs(path: Path) -> Outputs:
    """What ``save_outputs`` wrote: [N, C], or every output by name per image."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"not a saved simulator output ({e}): rerun with --force", path) from None
    names = arr.dtype.names
    if names is None:
        return cast(np.ndarray, arr)
    return [{name: np.array(rec[name]) for name in names} for rec in arr]


def agreement_of(ctx: StepContext, outputs: Outputs) -> Agreement | None:
    """``outputs`` against the reference, a detector's by its boxes (the judge every row goes through), not held
    to any floor; None without a reference."""
    names = [p.name for p in ctx.eval_images]
    try:
        if isinstance(outputs, np.ndarray):
            return compare(outputs, load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature), names)
        reference = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    except InputError:
        return None
    return judge(ctx.config, names, outputs, reference, placements(ctx))[0]


def worst_image(ctx: StepContext, outputs: Outputs) -> str | None:
    """The eval image whose outputs are furthest from the reference's (a detector's: every output flattened);
    None without a reference."""
    agreement = agreement_of(ctx, outputs)
    return None if agreement is None else min(agreement.per_image, key=lambda p: p.cosine).image


def gate_kind(kind: Kind) -> Literal["float", "int8"]:
    """The floors a build is held to: an FP16 build is a float model."""
    return "float" if kind == "fp16" else "int8"


# A toolkit session holding a finished build (in ``job.workdir``, logging to the path given), and the
# fields the manifest records about that build.
Session = Callable[[Job, Path], AbstractContextManager[tuple[Any, dict[str, Any]]]]


class RknnConverter(Converter):
    """rknn-toolkit2 builds (FP16, INT8, hybrid, a search variant): built in a toolkit session, simulated
    on the eval images and exported in that session (the x86 simulator cannot run an exported .rknn),
    the simulator's outputs kept beside the model and verified by the base (``MADE``). Not a
    `modelport convert` target (no ``convert``): `rknn convert` and the INT8 search call ``simulated``."""

    tool = toolkit.DIST

    def __init__(self, verbose: bool = False):
        self.verbose = verbose

    def unavailable_reason(self) -> str | None:
        return toolkit.unavailable_reason()

    def tool_version(self) -> str:
        return toolkit.tool_version()

    def simulated(
        self,
        ctx: StepContext,
        force: bool,
        outputs: Mapping[str, str],
        session: Session,
        *,
        kind: Kind,
        inputs: Mapping[str, Path],
        options: Mapping[str, Any],
        log: Path,
        gate: bool = True,
        tool: str | None = None,
        from_agreement: Callable[[Agreement | None], Mapping[str, Any]] | None = None,
    ) -> bool:
        """``outputs`` ("model": the .rknn, "eval": its simulator outputs, then any file the session
        writes) made in ``session``, verified (``gate``: held to the floors of ``kind``), recorded.
        Returns True when they were made now (False: the manifest matched)."""
        rel, evals = outputs["model"], outputs["eval"]
        made_now = False

        def make(job: Job) -> Made:
            nonlocal made_now
            made_now = True
            log.unlink(missing_ok=True)
            t0 = time.monotonic()
            with session(job, log) as (rk, record):
                sim = run_simulator(rk, ctx, log, ctx.store.path(rel))
                toolkit.call(rk.export_rknn, str(job.tmp(rel)), what="export_rknn", log=log, path=ctx.store.path(rel))
            save_outputs(job.tmp(evals), sim)
            seconds = round(time.monotonic() - t0, 1)
            record |= {"seconds_total": seconds, "versions": toolkit.versions(), "log": ctx.store.rel(log)}
            return Made(sim, "simulated", record, from_agreement)

        self.produce(
            ctx, force, outputs, make, inputs=inputs, options=options, runtime=MADE, kind=gate_kind(kind), gate=gate, tool=tool
        )
        return made_now


@dataclass
class Built:
    model: Path
    eval_outputs: Path
    cached: bool
    agreement: dict[str, Any] | None
    seconds: float | None


def build_model(ctx: StepContext, kind: Kind, force: bool = False, verbose: bool = False) -> Built:
    """``MODELS[kind]`` built with the configured settings, verified against the floors."""
    onnx_path = preflight(ctx, kind)
    rel, evals = MODELS[kind], eval_outputs_path(kind)

    @contextlib.contextmanager
    def session(job: Job, log: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
        rc = ctx.config.rknn
        algo = f"{rc.quantized_algorithm}/{rc.quantized_method} {rc.quantized_dtype}" if kind == "int8" else "no quantization"
        step(f"rknn convert {kind}: {ONNX} -> {rel} ({rc.target_platform}, {algo})")
        with toolkit.session(log, job.workdir, verbose) as rk:
            build_s = build(rk, ctx, onnx_path, kind, job.workdir, log)
            console.print(f"   built in {build_s:.1f} s")
            yield rk, {"build_seconds": round(build_s, 1)}

    made = RknnConverter(verbose).simulated(
        ctx,
        force or ctx.force,
        {"model": rel, "eval": evals},
        session,
        kind=kind,
        inputs=inputs(ctx, onnx_path, kind),
        options=options(ctx, kind),
        log=log_path(ctx, f"convert-{kind}"),
    )
    extra = (ctx.store.read_manifest(rel) or {}).get("extra", {})
    return Built(ctx.store.path(rel), ctx.store.path(evals), not made, extra.get("agreement"), extra.get("seconds_total"))
