"""RKNN INT8 recovery knobs: the toolkit's quantized_algorithm (normal, kl_divergence, mmse), what it offers on
top of one (a method is ALGORITHM[+OPTION...], ``OPTIONS``), and hybrid quantization (layers kept in float16);
common/recovery.py searches.

A variant is built, simulated on the eval images and exported in one toolkit session (the x86
simulator cannot run an exported .rknn), into ``rknn/variants/<id>.rknn`` + ``.eval.npy``, cached by
manifest. Layers to keep in float16 come from accuracy_analysis of the base variant on the image
whose output is worst, mapped to ONNX names (layers.py) and back to the toolkit's tensor names.
An ``+auto_hybrid`` variant's float16 layers are the toolkit's own choice, read from the quantizer's cfg after
the build, a ``+proposal`` variant's those hybrid step 1 proposes; both are recorded as float layers
(``toolchain_float_layers``). Asked for more float layers, ``+auto_hybrid`` builds them all by hybrid step 2, as
any other method, ``+proposal`` keeps its proposal and adds them. There is no latency here (a simulator): among
passing variants the one whose float layers cost least is kept (``recovery.choose``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from modelport.common import layer_analysis, onnx_layers
from modelport.common.artifacts import Job, file_inputs
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.log import step
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import reference_file
from modelport.runtime.knobs import Builder, Knobs, configured_first
from modelport.runtime.run import prepared_images

from . import convert, toolkit
from .dataset import nchw_uint8, write_npy_list
from .error_analysis import accuracy_analysis, parse_error_analysis
from .hybrid_cfg import built_cfg, cfg_layers, floated, patch_cfg, quantized_tensors, step1, step2
from .layer_doc import document

ALGORITHMS = ("normal", "kl_divergence", "mmse")  # RKNN.config(quantized_algorithm=...)
OPTIONS = {
    "layer": "quantized_method='layer': one scale per tensor, not per channel (all layers INT8)",
    "auto_hybrid": "build(auto_hybrid=True): the toolkit floats the layers below [rknn] auto_hybrid_cos_thresh",
    "proposal": "hybrid step 1's own float16 proposal from [rknn] hybrid_proposal_images calibration images",
}
# The search's order: every layer INT8 first (kl_divergence before +layer: what RFB-320 keeps), then the toolkit's
# own float16 choices, mmse last (minutes: the search stops at the first method that meets the floors).
# Measured on MobileNetV2 over the 12 shipped + 23 harder photos (build s at a load of 2-8 on 2 cores; top-1 /
# cosine min / mean): normal 5 s 89% / 0.749 / 0.969; kl_divergence 13 s 86% / 0.688 / 0.955; normal+layer 6 s
# 89% / 0.710 / 0.940; normal+auto_hybrid 7 s, at 0.98 one layer floated, 89% / 0.749 / 0.969 (at 0.99, 23
# tensors: 91% / 0.735 / 0.972; 0.999, 98: 89% / 0.584 / 0.959); normal+proposal (33 tensors, 23 layers) 14 s
# after its ~60 s proposal 94% / 0.948 / 0.994, and with one more of its worst layers in float16 it meets the
# floors; mmse 214-656 s 86% / 0.741 / 0.979. The float layers the search adds to plain normal only lower the
# worst photo's cosine (1 / 2 / 4 layers: 0.583 / 0.395 / 0.373).
# Not offered: optimization_level 0-2 simulate bit-identical to 3; gdq needs 16-bit activations (w8a16, w4a16).
METHODS = ("normal", "kl_divergence", "normal+layer", "normal+auto_hybrid", "normal+proposal", "mmse")


def parse_method(method: str) -> tuple[str, list[str]]:
    """``normal+layer`` -> ("normal", ["layer"]); an algorithm or option the toolkit does not have is refused in one line."""
    algorithm, *opts = method.split("+")
    problems = [] if algorithm in ALGORITHMS else [f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}"]
    unknown = [o for o in opts if o not in OPTIONS]
    if unknown:
        problems.append(f"unknown option {', '.join('+' + o for o in unknown)} (known: {', '.join('+' + o for o in OPTIONS)})")
    if "auto_hybrid" in opts and "proposal" in opts:
        problems.append("+auto_hybrid and +proposal are two float16 choices of the toolkit: pick one")
    if problems:
        raise InputError(f"RKNN INT8 method {method!r}: {'; '.join(problems)}")
    return algorithm, opts


def plain_method(method: str) -> str:
    """``method`` without the toolkit's float16 choice (``+auto_hybrid``, ``+proposal``): the quantization it starts
    from (what step 1 writes for it)."""
    algorithm, opts = parse_method(method)
    return "+".join([algorithm, *(o for o in opts if o not in ("auto_hybrid", "proposal"))])


def variant_ctx(ctx: StepContext, method: str) -> StepContext:
    algorithm, opts = parse_method(method)
    overrides: list[str | tuple[str, Any]] = [("rknn.quantized_algorithm", algorithm)]
    if "layer" in opts:
        overrides.append(("rknn.quantized_method", "layer"))
    return StepContext(
        config_path=ctx.config_path,
        overrides=[*ctx.overrides, *overrides],
        artifacts=ctx.artifacts,
        force=ctx.force,
    )


class RknnKnobs(Knobs):
    key, display = "rknn-int8", "RKNN INT8 (simulator)"
    outputs = {"model": convert.MODELS["int8"], "eval": convert.eval_outputs_path("int8")}
    files = {"model": "rknn/variants/{id}.rknn", "eval": "rknn/variants/{id}.eval.npy"}
    sized = ("model",)
    runtimes = None  # the simulator has no NPU timing
    untimed = "no NPU timing in the x86 simulator: RKNN INT8 speed is measured on a board (`rknn board`, rknn-int8-board)"
    builder: ClassVar[Builder] = toolkit  # its tool_version()

    def __init__(self, ctx: StepContext, force: bool, verbose: bool):
        self.verbose = verbose
        super().__init__(ctx, force)

    @cached_property
    def graph(self) -> onnx_layers.OnnxGraph:
        """Read when a layer is first named: after the preflight checks that the ONNX model is there."""
        return onnx_layers.load(self.ctx.store.path(convert.ONNX))

    def space(self) -> tuple[list[str], list[str]]:
        # [rknn] hybrid_float16_layers stay `rknn hybrid`'s: no configured float layers here
        rc = self.ctx.config.rknn
        # configured per tensor already, +layer would build the configured method again
        methods = [m for m in METHODS if rc.quantized_method == "channel" or "layer" not in parse_method(m)[1]]
        return configured_first(rc.quantized_algorithm, methods), []

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        """Built, simulated on the eval images and exported in one toolkit session, cached by manifest."""
        vid = variant_id(method, float_layers)
        vctx = variant_ctx(self.ctx, method)
        onnx_path = vctx.store.path(convert.ONNX)
        opts = parse_method(method)[1]
        auto = "auto_hybrid" in opts and not float_layers
        # before the variant's session: step 1 runs in one of its own
        plain = self.step1_cfg(method) if auto else ""
        proposed = self.proposed(method) if "proposal" in opts else []

        @contextlib.contextmanager
        def session(job: Job, log: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
            step(f"rknn variant {vid}: {method}" + (f", {len(float_layers)} layers in float16" if float_layers else ""))
            if auto:
                with toolkit.session(log, job.workdir, self.verbose) as rk:
                    convert.build(rk, vctx, onnx_path, "int8", job.workdir, log, auto_hybrid=True)
                    tensors = floated(built_cfg(rk, job.workdir / "built.quantization.cfg"), plain)
                    yield rk, {"float16_tensors": tensors, "toolchain_float_layers": self.nodes_of(tensors)}
                return
            with self._built(vctx, onnx_path, float_layers, job.workdir, log, proposed) as (rk, tensors):
                chosen = {"toolchain_float_layers": self.nodes_of(proposed)} if "proposal" in opts else {}
                yield rk, {"float16_tensors": tensors} | chosen

        convert.RknnConverter(self.verbose).simulated(
            vctx,
            self.force,
            {"model": files["model"], "eval": files["eval"]},
            session,
            kind="int8",
            inputs=convert.inputs(vctx, onnx_path, "int8"),
            options={
                **convert.options(vctx, "int8"),
                "float16_layers": float_layers,
                **({"auto_hybrid_cos_thresh": vctx.config.rknn.auto_hybrid_cos_thresh} if auto else {}),
                **({"proposed": proposed} if "proposal" in opts else {}),
            },
            log=convert.log_path(vctx, f"variant-{vid}"),
            gate=False,
        )

    def inputs(self) -> dict[str, Path]:
        """The configured build's inputs (every preflight check first) and the eval images."""
        onnx_path = convert.preflight(self.ctx, "int8")
        return {**convert.inputs(self.ctx, onnx_path, "int8"), **file_inputs("image", self.ctx.eval_images)}

    def options(self) -> dict[str, Any]:
        opts = {k: v for k, v in convert.options(self.ctx, "int8").items() if k != "quantized_algorithm"}
        rc = self.ctx.config.rknn
        return opts | {
            "algorithm": rc.quantized_algorithm,
            "auto_hybrid_cos_thresh": rc.auto_hybrid_cos_thresh,  # the +auto_hybrid methods' threshold
            "hybrid_proposal_images": rc.hybrid_proposal_images,  # the +proposal methods' images
        }

    @contextlib.contextmanager
    def _built(
        self,
        vctx: StepContext,
        onnx_path: Path,
        float_layers: list[str],
        workdir: Path,
        log: Path,
        proposed: list[str] | None = None,
    ) -> Iterator[tuple[Any, list[str]]]:
        """A toolkit session holding the variant's build, and the tensors kept in float16: a plain build, or
        hybrid step1, then (in a new session, as the toolkit needs) the float16 layers (and ``proposed`` tensors)
        and step2."""
        proposed = proposed or []
        if not float_layers and not proposed:
            with toolkit.session(log, workdir, self.verbose) as rk:
                convert.build(rk, vctx, onnx_path, "int8", workdir, log)
                yield rk, []
            return
        cfg = step1(vctx, onnx_path, workdir, log, self.verbose)
        text, stem = cfg.read_text(), onnx_path.stem
        quantized = quantized_tensors(text)
        tensors = [t for t in quantized if t in proposed or ((la := self.layer_of(t)) and la.node in float_layers)]
        (workdir / "hybrid.quantization.cfg").write_text(patch_cfg(text, tensors))
        with toolkit.session(log, workdir, self.verbose) as rk:
            step2(rk, stem, log, onnx_path)
            yield rk, tensors

    def layer_of(self, name: str) -> onnx_layers.OnnxLayer | None:
        """The ONNX layer of a toolkit tensor or layer name (named after ONNX tensors, as layers.py maps them)."""
        return self.graph.layer_of(name) or self.graph.by_node(name)

    def nodes_of(self, tensors: list[str]) -> list[str]:
        """The ONNX layers of toolkit tensors, each once, in the tensors' order (unmapped tensors left out)."""
        return list(dict.fromkeys(la.node for t in tensors if (la := self.layer_of(t))))

    def step1_cfg(self, method: str) -> str:
        """The toolkit's own hybrid step-1 cfg for ``method`` (cached; ``+auto_hybrid`` / ``+proposal``: their plain
        quantization's): which tensors it quantizes."""
        method = plain_method(method)
        vctx = variant_ctx(self.ctx, method)
        store, onnx_path = vctx.store, vctx.store.path(convert.ONNX)
        rel = f"rknn/variants/{method}.quantization.cfg"
        with store.produce(
            rel,
            inputs=convert.inputs(vctx, onnx_path, "int8"),
            tool="rknn-toolkit2 hybrid_quantization_step1",
            tool_version=toolkit.tool_version(),
            options=convert.options(vctx, "int8"),
            force=self.force,
        ) as job:
            if not job.cached:
                log = convert.log_path(vctx, f"step1-{method}")
                shutil.copyfile(step1(vctx, onnx_path, job.workdir, log, self.verbose), job.tmp(rel))
        return store.path(rel).read_text()

    def proposed(self, method: str) -> list[str]:
        """The tensors hybrid step 1's own proposal keeps in float16 for ``method``'s quantization (cached): from
        ``[rknn] hybrid_proposal_images`` calibration images, as `rknn hybrid` proposes them."""
        method = plain_method(method)
        vctx = variant_ctx(self.ctx, method)
        store, onnx_path = vctx.store, vctx.store.path(convert.ONNX)
        rel = f"rknn/variants/{method}.proposal.quantization.cfg"
        images = min(vctx.config.rknn.hybrid_proposal_images, len(vctx.calibration))
        with store.produce(
            rel,
            inputs=convert.inputs(vctx, onnx_path, "int8"),
            tool="rknn-toolkit2 hybrid_quantization_step1 (proposal)",
            tool_version=toolkit.tool_version(),
            options=convert.options(vctx, "int8") | {"proposal_images": images},
            force=self.force,
        ) as job:
            if not job.cached:
                log = convert.log_path(vctx, f"proposal-{method}")
                cfg = step1(vctx, onnx_path, job.workdir, log, self.verbose, proposal=True, proposal_images=images)
                shutil.copyfile(cfg, job.tmp(rel))
        return cfg_layers(store.path(rel).read_text())[0]

    def quantized_layers(self, variant: Variant) -> set[str]:
        """The layers with a tensor step 1 quantizes (for the variant's method); its float16 layers excepted."""
        layers = set(self.nodes_of(quantized_tensors(self.step1_cfg(variant.method))))
        return layers - set(variant.float_layers)

    def worst_layers(self, variant: Variant) -> list[str]:
        """accuracy_analysis of ``variant``'s build on its worst eval image, ranked by the toolkit's single-layer cosine."""
        vctx = variant_ctx(self.ctx, variant.method)
        out = f"analysis/variants/{self.key}-{variant.id}.json"
        worst_image = convert.worst_image(vctx, convert.load_outputs(vctx.store.path(variant.files["eval"])))
        if worst_image is None:  # the images are ranked against the reference, which the search itself needs
            raise InputError("no reference outputs to rank the eval images by", vctx.store.path(reference_file(vctx.config)))
        store, onnx_path = vctx.store, vctx.store.path(convert.ONNX)
        proposed = self.proposed(variant.method) if "proposal" in parse_method(variant.method)[1] else []
        with store.produce(
            out,
            inputs={"model": store.path(variant.files["model"]), "onnx": onnx_path},
            tool="rknn-toolkit2 accuracy_analysis",
            tool_version=toolkit.tool_version(),
            options={"image": worst_image},
            force=self.force,
        ) as job:
            if not job.cached:
                step(f"rknn accuracy_analysis of variant {variant.id} on {worst_image}")
                log, t0 = convert.log_path(vctx, f"variant-{variant.id}-analysis"), time.monotonic()
                by_name = dict(zip([p.name for p in vctx.eval_images], prepared_images(vctx), strict=True))
                npy = (
                    write_npy_list(
                        [nchw_uint8(by_name[worst_image], vctx.config.input)], [worst_image], job.workdir / "inputs", "inputs.txt"
                    )
                    .read_text()
                    .split()[0]
                )
                with self._built(vctx, onnx_path, variant.float_layers, job.workdir, log, proposed) as (rk, _):
                    snap = job.workdir / "snapshot"
                    accuracy_analysis(rk, npy, snap, log, onnx_path)
                    parsed = parse_error_analysis((snap / "error_analysis.txt").read_text(errors="replace"))
                data = {"images": [{"image": worst_image, "layers": parsed}], "seconds_total": time.monotonic() - t0}
                doc = document(vctx, data, self.graph, model=variant.files["model"])
                job.tmp().write_text(json.dumps(doc, indent=1) + "\n")
        rows = json.loads(store.path(out).read_text())["layers"]
        return [r["node"] for r in layer_analysis.worst(rows, len(rows))]


def run(ctx: StepContext, force: bool = False, verbose: bool = False) -> convert.Built:
    """rknn/model.rknn + its simulator outputs: the configured build, or the variant the search kept."""
    knobs = RknnKnobs(ctx, force, verbose)
    record = knobs.produce(force or ctx.force)
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    store = ctx.store
    return convert.Built(
        store.path(knobs.outputs["model"]),
        store.path(knobs.outputs["eval"]),
        record["cached"],
        kept["agreement"],
        kept.get("build_seconds"),
    )
