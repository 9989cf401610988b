"""``report/sections/rknn.md``: what the report cannot take from result rows alone.

`modelport report` (tf-onnx env) appends every ``report/sections/*.md`` to results.md;
this env writes its part as a file, so no env imports another's code. Sources:
results/rknn-*.json, rknn/accuracy/analysis.json, the hybrid model's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelport.common.artifacts import write_atomic
from modelport.common.context import StepContext
from modelport.common.display import shown

from .analysis import ANALYSIS
from .convert import MODELS
from .hybrid import change
from .simulate import BACKENDS

SECTION = "report/sections/rknn.md"


def _result(ctx: StepContext, key: str) -> dict[str, Any] | None:
    p = ctx.store.path(f"results/{key}.json")
    return json.loads(p.read_text()) if p.is_file() else None


def _agreement(a: dict[str, Any] | None, ctx: StepContext) -> list[str]:
    """A row's agreement cells: a detector's boxes F1, mean IoU and mAP, else top-1 and cosine min / mean."""
    if ctx.config.detector is None:
        return [f"{a['top1']:.0%} of {a['images']}", f"{a['cosine_min']:.4f} / {a['cosine_mean']:.4f}"] if a else ["–"] * 2
    d = (a or {}).get("detect")
    if not d:
        return ["–"] * 3
    mean_ap = f"{d['map']:.4f} ({d['source_map']:.4f})" if d.get("map") is not None and d.get("source_map") is not None else "–"
    return [f"{d['f1']:.4f} ({d['matched']}/{d['source_boxes']} matched)", f"{d['mean_iou']:.4f}", mean_ap]


def markdown(ctx: StepContext) -> str:
    rc = ctx.config.rknn
    lines = ["## RKNN (Rockchip NPU)", ""]
    rows = [r for b in BACKENDS.values() if (r := _result(ctx, b.key))]
    if rows:
        tv = rows[0].get("tool_versions", {})
        lines += [
            f"rknn-toolkit2 {tv.get('rknn-toolkit2', '?')}, target `{rc.target_platform}`, "
            f"{rc.quantized_algorithm}/{rc.quantized_method} {rc.quantized_dtype}, mean/std from `[input]`. "
            "Latency is not measured here: rknn-toolkit2's x86 simulator models the NPU's arithmetic, not "
            "its speed (`modelport rknn board --target-device SERIAL` times a real board).",
            "",
            # a detector's rows are judged by their boxes against the source's, a classifier's by top-1 and cosine
            "| model | boxes F1 vs source | mean IoU | mAP (source) | size | build s |"
            if ctx.config.detector is not None
            else "| model | top-1 agreement | cosine min / mean | size | build s |",
            "|---|---|---|---|---|---|" if ctx.config.detector is not None else "|---|---|---|---|---|",
        ]
        for r in rows:
            size = f"{r['size_bytes'] / 1e6:.2f} MB" if r.get("size_bytes") else "–"
            built = shown(r.get("settings", {}).get("build_seconds"), "–")
            lines.append(f"| {r['name']} | {' | '.join(_agreement(r.get('agreement'), ctx))} | {size} | {built} |")
        lines.append("")
    hybrid = ctx.store.read_manifest(MODELS["hybrid"])
    if hybrid and hybrid.get("extra", {}).get("before") and hybrid["extra"].get("after"):
        e = hybrid["extra"]
        b, a = e["before"], e["after"]
        n_prop = hybrid["options"]["proposal_images"]
        source = (
            f"{len(e['proposed_layers'])} proposed by the toolkit from {n_prop} calibration images, the rest"
            if n_prop
            else "no toolkit proposal, all"
        ) + " from `[rknn] hybrid_float16_layers`"
        lines += [
            f"Hybrid quantization ({len(e['float16_layers'])} tensors kept in float16: {source}; "
            f"step 1 took {e['step1_seconds']} s): {change(b, a)[1]}.",
            "",
        ]
    path = ctx.store.path(ANALYSIS)
    if path.is_file():
        data = json.loads(path.read_text())
        outs = ", ".join(
            f"{i['image']} {i['output'].get('simulator', {}).get('entire', {}).get('cosine', float('nan')):.4f}"
            for i in data["images"]
        )
        lines += [
            f"Per-layer accuracy analysis (`{ANALYSIS}`, output cosine vs float: {outs}; analysis took "
            f"{data['seconds_total']} s). Worst layers by their own (single-layer) cosine:",
            "",
            "| layer | type | single cosine | entire cosine | entire drop | image |",
            "|---|---|---|---|---|---|",
        ]
        for w in data["worst_layers"]:
            lines.append(
                f"| `{w['name']}` | {w['type']} | {w['single_cosine']:.5f} | {w['entire_cosine']:.5f} | "
                f"{w['entire_drop']:+.5f} | {w['image']} |"
            )
    return "\n".join(lines) + "\n"


def write(ctx: StepContext) -> Path:
    path = ctx.store.path(SECTION)
    write_atomic(path, markdown(ctx))
    return path
