"""`rknn analyze`: rknn-toolkit2 ``accuracy_analysis`` per layer, parsed into ``rknn/accuracy/analysis.json``.

``error_analysis.txt`` compares every layer of the quantized model with the float
("golden") one: *entire* = error accumulated up to that layer, *single* = that layer's
own error with float inputs (the one that says which layer to keep in float16). The
raw text is kept beside the JSON; the ~340 MB of tensor dumps per image are parsed and
deleted unless ``[rknn] keep_snapshots``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, cast

from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.log import console, step
from modelport.runtime.run import prepared_images

from . import build, convert, toolkit
from .dataset import nchw_uint8, write_npy_list
from .error_analysis import accuracy_analysis
from .error_analysis import parse_error_analysis as parse_error_analysis

SCHEMA = "modelport.rknn-accuracy/1"
ANALYSIS = "rknn/accuracy/analysis.json"


def worst_layers(per_image: list[dict[str, Any]], n: int, group: str = "simulator") -> list[dict[str, Any]]:
    """The ``n`` layers with the lowest single-layer cosine (worst image each), with the entire-cosine drop there."""
    worst: dict[str, dict[str, Any]] = {}
    for img in per_image:
        prev = 1.0
        for layer in img["layers"]:
            m = layer["metrics"].get(group)
            if not m:
                continue
            drop = prev - m["entire"]["cosine"]
            prev = m["entire"]["cosine"]
            row = {
                "name": layer["name"],
                "type": layer["type"],
                "image": img["image"],
                "single_cosine": m["single"]["cosine"],
                "single_euclidean": m["single"]["euclidean"],
                "entire_cosine": m["entire"]["cosine"],
                "entire_drop": round(drop, 6),
            }
            if layer["name"] not in worst or row["single_cosine"] < worst[layer["name"]]["single_cosine"]:
                worst[layer["name"]] = row
    return sorted(worst.values(), key=lambda r: r["single_cosine"])[:n]


def choose_images(ctx: StepContext, requested: list[str], outputs: convert.Outputs) -> list[str]:
    """Requested eval image names, else the one whose INT8 output is furthest from the reference."""
    names = [p.name for p in ctx.eval_images]
    unknown = [r for r in requested if r not in names]
    if unknown:
        raise InputError(f"not an eval image: {', '.join(unknown)} (eval images: {', '.join(names)})", ctx.config.images.eval)
    if requested:
        return list(dict.fromkeys(requested))
    worst = convert.worst_image(ctx, outputs)
    if worst is None:
        return [ctx.config.images.headline if ctx.config.images.headline in names else names[0]]
    return [worst]


def run(ctx: StepContext, images: list[str] | None = None, force: bool = False, verbose: bool = False) -> dict[str, Any]:
    """accuracy_analysis of the INT8 model on ``images`` -> rknn/accuracy/ (JSON + raw text)."""
    built = build.run(ctx, "int8", verbose=verbose)  # cached; also runs every preflight check
    chosen = choose_images(ctx, list(images or ctx.config.rknn.analysis_images), convert.load_outputs(built.eval_outputs))
    texts = {name: f"rknn/accuracy/error_analysis-{Path(name).stem}.txt" for name in chosen}
    log = convert.log_path(ctx, "analyze")
    opts = {**convert.options(ctx, "int8"), "images": chosen, "worst_layers": ctx.config.rknn.worst_layers}
    with ctx.store.produce(
        [ANALYSIS, *texts.values()],
        inputs={"model": built.model, **convert.inputs(ctx, ctx.store.path(convert.ONNX), "int8")},
        tool="rknn-toolkit2 accuracy_analysis",
        tool_version=toolkit.tool_version(),
        options=opts,
        force=force or ctx.force,
    ) as job:
        if not job.cached:
            step(f"rknn analyze: accuracy_analysis on {', '.join(chosen)} -> {ANALYSIS}")
            log.unlink(missing_ok=True)
            by_name = dict(zip([p.name for p in ctx.eval_images], prepared_images(ctx), strict=True))
            npys = write_npy_list(
                [nchw_uint8(by_name[n], ctx.config.input) for n in chosen], chosen, job.workdir / "inputs", "inputs.txt"
            )
            paths = npys.read_text().split()
            per_image: list[dict[str, Any]] = []
            t0 = time.monotonic()
            with toolkit.session(log, job.workdir, verbose) as rk:
                convert.build(rk, ctx, ctx.store.path(convert.ONNX), "int8", job.workdir, log)
                build_s = time.monotonic() - t0
                for name, npy in zip(chosen, paths, strict=True):
                    snap = job.workdir / f"snapshot-{Path(name).stem}"
                    t1 = time.monotonic()
                    accuracy_analysis(rk, npy, snap, log, ctx.store.path(convert.ONNX))
                    text = (snap / "error_analysis.txt").read_text(errors="replace")
                    layers = parse_error_analysis(text)
                    job.tmp(texts[name]).write_text(text)
                    per_image.append(
                        {
                            "image": name,
                            "seconds": round(time.monotonic() - t1, 1),
                            "layers": layers,
                            "output": next((lay["metrics"] for lay in reversed(layers) if lay["metrics"]), {}),
                        }
                    )
                    if ctx.config.rknn.keep_snapshots:
                        keep = ctx.store.path(f"rknn/accuracy/snapshot-{Path(name).stem}")
                        shutil.rmtree(keep, ignore_errors=True)
                        shutil.move(str(snap), keep)
                    else:
                        shutil.rmtree(snap, ignore_errors=True)  # ~340 MB each: do not wait for the step's end
            data = {
                "schema": SCHEMA,
                "model": ctx.store.rel(built.model),
                "target_platform": ctx.config.rknn.target_platform,
                "options": {k: v for k, v in opts.items() if k not in ("eval_images", "calibration")},
                "build_seconds": round(build_s, 1),
                "seconds_total": round(time.monotonic() - t0, 1),
                "worst_layers": worst_layers(per_image, ctx.config.rknn.worst_layers),
                "images": per_image,
                "raw": dict(texts.items()),
            }
            job.tmp(ANALYSIS).write_text(json.dumps(data, indent=1) + "\n")
            job.record(seconds_total=data["seconds_total"])
    data = json.loads(ctx.store.path(ANALYSIS).read_text())
    for w in data["worst_layers"][:3]:
        console.print(
            f"   worst layer: [{w['type']}] {w['name']}: single cosine {w['single_cosine']:.5f}, "
            f"entire {w['entire_cosine']:.5f} on {w['image']}",
            markup=False,
        )
    return cast(dict[str, Any], data)
