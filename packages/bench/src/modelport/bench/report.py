"""Merge every results/*.json into one report: terminal table, Markdown + charts, JSON, CSV.

Reads only result files (plus manifests for notes), so results from other machines
(a Jetson, an RK3588 board, a GPU server) merge with the rest.
"""

from __future__ import annotations

import csv
import errno
import io
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelport.common.artifacts import ArtifactStore, short, write_atomic
from modelport.common.backends import catalogue, rank
from modelport.common.bundle import Source, read_source
from modelport.common.config import Config
from modelport.common.contract import CONTRACT, read_contract
from modelport.common.errors import InputError
from modelport.common.machine import device_key, machine_info
from modelport.common.recovery import speed_text
from modelport.common.reference import DETECT_REFERENCE, REFERENCE
from modelport.common.results import LAST_OK, outputs_problem, read_result
from modelport.common.schema import REPORT_SCHEMA, BackendResult
from modelport.common.strict_json import json_text
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.registry import SOURCE_KEYS, reference_key, source_key

from .depth_report import pipeline_time
from .merge import device_of, matrix, merge, model_id, reference_for, store_merged


def source_info(store: ArtifactStore) -> dict[str, Any] | None:
    """What the report says about the reference: the source, its runtime, its outputs."""
    contract = read_contract(store.path(CONTRACT))
    if contract is None:
        return None
    ref = (store.read_manifest(DETECT_REFERENCE if contract.task == "detect" else REFERENCE) or {}).get("extra", {})
    return {
        "key": source_key(contract),
        "name": contract.name,
        "kind": contract.kind,
        "runtime": contract.runtime,
        "input": {
            "layout": contract.layout,
            "shape": contract.input_shape,
            "dtype": contract.dtype,
            "scale": contract.scale,
            "zero_point": contract.zero_point,
        },
        "classes": contract.classes,
        "task": contract.task,
        "outputs": ref.get("outputs"),
        "all_rows_int8_floors": contract.quantized,
    }


def load_results(store: ArtifactStore, required: bool = True) -> list[BackendResult]:
    results = [read_result(path) for path in sorted(store.path("results").glob("*.json"))]
    if not results and required:
        raise InputError("no results to report: run `modelport bench ...` first", store.path("results"))
    expected = expected_source(results, store)
    return [flag_unusable(r, store, expected) for r in results]


def ordered(results: list[BackendResult]) -> list[BackendResult]:
    return sorted(results, key=lambda r: (r.status != "ok", model_id(r), device_of(r), rank(r.key), r.key))


def check_comparable(results: list[BackendResult], where: Callable[[BackendResult], str]) -> None:
    """Refuse to merge side by side results of one model measured with different preprocessing (one
    artifacts folder is checked against its fetched source instead: expected_source / flag_unusable)."""
    refs = {model_id(r): r for r in results if r.key in SOURCE_KEYS and r.status == "ok"}
    for r in results:
        ref = refs.get(model_id(r))
        if r.status != "ok" or ref is None:
            continue
        for field in ("model_sha256", "preprocessing"):
            if getattr(r, field) != getattr(ref, field):
                raise InputError(
                    f"{r.key}: {field} {getattr(r, field)} differs from the reference's {getattr(ref, field)}: "
                    "it measured another model or preprocessing; rerun its bench or delete it",
                    where(r),
                )


def expected_source(results: list[BackendResult], store: ArtifactStore) -> tuple[str | None, str | None]:
    """(model sha256, preprocessing) every row must share: the fetched source's, else the reference row's."""
    ref = next((r for r in results if r.key == reference_key(store) and r.status == "ok"), None)
    current = store.current_source()
    sha = current["sha256"] if current else (ref.model_sha256 if ref else None)
    return sha, ref.preprocessing if ref else None


def flag_unusable(r: BackendResult, store: ArtifactStore, expected: tuple[str | None, str | None]) -> BackendResult:
    """A row of another source model or preprocessing, or with a broken json/npy pair, becomes a failed row
    saying so: never a number beside the others."""
    if r.status != "ok":
        return r
    sha, preprocessing = expected
    problem = outputs_problem(r, store.path(f"results/{r.key}.json"))
    if sha and r.model_sha256 is None:
        problem = f"records no source model (written by an older modelport): rerun `modelport bench {r.key}`"
    elif sha and r.model_sha256 != sha:
        problem = (
            f"measured another source model (sha256 {short(r.model_sha256)}, the source is {short(sha)}): "
            f"rerun its convert and `modelport bench {r.key}`"
        )
    elif preprocessing and r.preprocessing != preprocessing:
        problem = f"measured with other preprocessing ({r.preprocessing}): rerun `modelport bench {r.key}`"
    if problem is None:
        return r
    return r.model_copy(
        update={
            "status": "failed",
            "reason": f"not reported: {problem}",
            "latency_ms": None,
            "agreement": None,
            "headline": None,
            "extra_timings": {},
            "throughput": [],
            "cold_start": None,
            "frame_ms": None,
            "layer_profile": None,
            "sustained": None,
            "latency_note": "not reported",
        }
    )


def last_ok(store: ArtifactStore, key: str) -> str | None:
    """When the failed row ``key`` replaced an ok result: that result's time (it is kept, not reported)."""
    path = store.path(f"{LAST_OK}/{key}.json")
    try:
        return read_result(path).created_utc if path.is_file() else None
    except InputError:
        return None


def gather(store: ArtifactStore, merge_paths: list[Path]) -> list[BackendResult]:
    """This folder's results, or with ``merge_paths`` (folders or bundles) the merged set, stored per model and device."""
    if not merge_paths:
        return ordered(load_results(store))  # a row of another source is flagged there, not mixed in
    store.path(".tmp").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=store.path(".tmp"), prefix="merge-"))
    try:
        local = load_results(store, required=False)
        sources = [Source(str(store.root), local, store.root)] if local else []
        sources += [read_source(Path(p), workdir) for p in merge_paths]
        merged = merge([r for s in sources for r in s.results])
        check_comparable(merged, lambda r: f"{model_id(r)} on {device_of(r)}")
        store_merged(store, merged, sources)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ordered(merged)


def entry(r: BackendResult, ref: BackendResult | None) -> dict[str, Any]:
    """One row of report/results.json (the keys DESIGN.md promises, and a few more)."""
    lat = r.latency_ms
    return {
        "backend": r.backend,
        "precision": r.precision,
        "name": r.name,
        "key": r.key,
        "status": r.status,
        "reason": r.reason,
        "env": r.env,
        "device": r.device,
        "device_key": device_of(r),
        "model": model_id(r),
        "run_id": r.run_id,
        "created_utc": r.created_utc,
        "latency_ms": lat.model_dump(include={"min", "median", "mean", "p90", "p99", "max"}) if lat else None,
        "latency_runs": lat.runs if lat else None,
        "latency_note": r.latency_note,
        "fps": lat.fps if lat else None,
        "relative_speed": (ref.latency_ms.median / lat.median) if (lat and ref and ref.latency_ms) else None,
        "size_bytes": r.size_bytes,
        "load_ms": r.load_ms,
        "agreement": r.agreement.model_dump(exclude={"per_image"}) if r.agreement else None,
        # a detector's decode + NMS, apart from the model's latency
        "postprocess_ms": r.postprocess_ms.model_dump(include={"median", "p90"}) if r.postprocess_ms else None,
        "headline": r.headline.model_dump() if r.headline else None,
        "settings": r.settings,
        "tool_versions": r.tool_versions,
        "load_avg": r.load_avg,
        "extra_timings": {k: v.model_dump() for k, v in r.extra_timings.items()},
        "notes": r.notes,
        "under_load": r.under_load,
        "unsteady": r.unsteady,
        "speed": r.speed.model_dump() if r.speed else None,
        **beyond_latency(r),
        "layer_profile": r.layer_profile.model_dump() if r.layer_profile else None,
        "speed_note": speed_text(r.speed),
        "agreement_note": r.agreement_note,
        "source_chain": r.source_chain,
    }


def beyond_latency(r: BackendResult) -> dict[str, Any]:
    """Throughput, cold start, memory, frame time and run conditions of a row (each None when not measured)."""
    best = r.best_throughput
    cold = r.cold_start.model_dump() | {"model_rss_bytes": r.cold_start.model_rss_bytes} if r.cold_start else None
    return {
        "throughput": [t.model_dump() for t in r.throughput],
        "best_fps": best.fps if best else None,
        "best_concurrency": best.concurrency if best else None,
        "best_mechanism": best.mechanism if best else None,
        "best_threads_per_worker": best.threads_per_worker if best else None,
        "cold_start": cold,
        "frame_ms": r.frame_ms.model_dump() if r.frame_ms else None,
        "sustained": r.sustained.model_dump() if r.sustained else None,
        "conditions": r.conditions.model_dump() if r.conditions else None,
    }


def build(store: ArtifactStore, config: Config | None = None, merge_paths: Sequence[Path] = ()) -> dict[str, Any]:
    config = config or Config()
    results = gather(store, list(merge_paths))
    machines = {device_of(r): r.machine for r in results if r.machine}
    key: str | None = reference_key(store)
    if not any(r.key == key and r.status == "ok" for r in results):  # merged from elsewhere: their source's
        key = next((r.key for r in results if r.key in SOURCE_KEYS and r.status == "ok"), None)
    return {
        "schema": REPORT_SCHEMA,
        "machine": machine_info() | {"device_key": device_key()},
        "devices": dict(sorted(machines.items())),
        "models": sorted({model_id(r) for r in results}),
        "reference": key,
        "source": source_info(store),
        "results": [entry(r, reference_for(r, results, SOURCE_KEYS)) | _kept(store, r) for r in results],
        "matrix": matrix(results),
        "floors": config.accuracy.model_dump(),  # what every conversion was verified against
        "min_speedup": config.quantization.min_speedup,  # the INT8 speed floor, for rows that carry none
        "backends": catalogue(),  # each key's env, precision and floors: what a checker needs without modelport installed
        "verify": config.convert.verify,
        "notes": notes(store),
        "pipeline_time": pipeline_time(store),
    }


def _kept(store: ArtifactStore, r: BackendResult) -> dict[str, Any]:
    when = last_ok(store, r.key) if r.status == "failed" else None
    return {"last_ok": {"created_utc": when, "path": f"{LAST_OK}/{r.key}.json"} if when else None}


def notes(store: ArtifactStore) -> list[str]:
    out = []
    extra = (store.read_manifest(ONNX_MODEL) or {}).get("extra", {})
    conv = {n: v for n, v in extra.get("converters", {}).items() if "median_ms" in v}
    if len(conv) > 1:
        parts = [f"{n}: median {v['median_ms']:.2f} ms / p90 {v['p90_ms']:.2f} ms" for n, v in conv.items()]
        out.append(
            f"Source->ONNX converters, verified ONNX timed in onnxruntime ({'; '.join(parts)}); kept {extra['converter']}."
            + (
                f" UNDER LOAD: {extra['race_under_load']}; these times are not trustworthy."
                if extra.get("race_under_load")
                else ""
            )
        )
    for name, reason in (extra.get("failed_converters") or {}).items():
        out.append(f"Converter {name} was not used: {reason}")
    return out


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    cols = [
        "model",
        "device_key",
        "run_id",
        "key",
        "name",
        "backend",
        "precision",
        "status",
        "reason",
        "median_ms",
        "p90_ms",
        "p99_ms",
        "fps",
        "relative_speed",
        "size_bytes",
        "load_ms",
        "top1_agreement",
        "top5_overlap",
        "cosine_min",
        "cosine_mean",
        "max_abs_diff",
        "mse",
        "headline_label",
        "headline_confidence",
        "f1_vs_source",
        "precision_vs_source",
        "recall_vs_source",
        "mean_iou",
        "map",
        "ap50",
        "source_map",
        "postprocess_ms",
        "best_fps",
        "best_concurrency",
        "best_mechanism",
        "best_threads_per_worker",
        "first_infer_ms",
        "baseline_rss_bytes",
        "peak_rss_bytes",
        "frame_ms",
        "sustained_drift",
        "sustained_flag",
        "under_load",
        "unsteady",
        *LAYER_COLUMNS,
    ]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for e in report["results"]:
        lat, a, h = e["latency_ms"] or {}, e["agreement"] or {}, e["headline"] or {}
        cold, frame = e.get("cold_start") or {}, e.get("frame_ms") or {}
        sustained = e.get("sustained") or {}
        det, post = a.get("detect") or {}, e.get("postprocess_ms") or {}
        w.writerow(
            {
                "model": e["model"],
                "device_key": e["device_key"],
                "run_id": e["run_id"],
                "key": e["key"],
                "name": e["name"],
                "backend": e["backend"],
                "precision": e["precision"],
                "status": e["status"],
                "reason": e["reason"],
                "median_ms": lat.get("median"),
                "p90_ms": lat.get("p90"),
                "p99_ms": lat.get("p99"),
                "fps": e["fps"],
                "relative_speed": e["relative_speed"],
                "size_bytes": e["size_bytes"],
                "load_ms": e["load_ms"],
                "top1_agreement": a.get("top1"),
                "top5_overlap": a.get("top5_overlap"),
                "cosine_min": a.get("cosine_min"),
                "cosine_mean": a.get("cosine_mean"),
                "max_abs_diff": a.get("max_abs_diff"),
                "mse": a.get("mse"),
                "headline_label": h.get("label"),
                "headline_confidence": h.get("confidence"),
                "f1_vs_source": det.get("f1"),
                "precision_vs_source": det.get("precision"),
                "recall_vs_source": det.get("recall"),
                "mean_iou": det.get("mean_iou"),
                "map": det.get("map"),
                "ap50": det.get("ap50"),
                "source_map": det.get("source_map"),
                "postprocess_ms": post.get("median"),
                "best_fps": e.get("best_fps"),
                "best_concurrency": e.get("best_concurrency"),
                "best_mechanism": e.get("best_mechanism"),
                "best_threads_per_worker": e.get("best_threads_per_worker"),
                "first_infer_ms": cold.get("first_infer_ms"),
                "baseline_rss_bytes": cold.get("baseline_rss_bytes"),
                "peak_rss_bytes": cold.get("peak_rss_bytes"),
                "frame_ms": frame.get("total"),
                "sustained_drift": sustained.get("drift"),
                "sustained_flag": sustained.get("flag"),
                "under_load": e.get("under_load"),
                "unsteady": e.get("unsteady"),
                **layer_columns(e.get("layer_profile")),
            }
        )
    return buf.getvalue()


LAYER_COLUMNS = ("slowest_layers", "layer_total_ms", "quantize_share", "dequantize_share", "reorder_share", "layer_profile_note")


def layer_columns(profile: dict[str, Any] | None) -> dict[str, Any]:
    """A row's per-layer time in CSV cells: the three slowest layers as "name (op) ms" joined by "; "."""
    p = profile or {}
    shares = p.get("shares") or {}
    slowest = "; ".join(f"{t['name']} ({t['op']}) {t['ms']:.3f}" for t in (p.get("slowest") or [])[:3])
    return {
        "slowest_layers": slowest or None,
        "layer_total_ms": p.get("total_ms"),
        **{f"{c}_share": shares.get(c) for c in ("quantize", "dequantize", "reorder")},
        "layer_profile_note": p.get("reason"),
    }


def write(store: ArtifactStore, report: dict[str, Any], photos: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Write report/'s files as one set: built in a temp folder beside it, then swapped in, so a failed
    write (a full disk) leaves the previous set whole instead of a new results.md beside an old results.html.
    ``photos``: the eval photos by file name, drawn under the detector rows' boxes (boxes.png)."""
    from .depth_report import render

    render(store)  # depth/*.json -> report/sections/depth-*.md, before the sections are read
    from .int8_report import render as render_int8

    render_int8(store, report)  # analysis/*.json + recover/*.json -> report/sections/int8.md
    final = store.path("report")
    final.mkdir(parents=True, exist_ok=True)
    store.path(".tmp").mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=store.path(".tmp"), prefix="report-"))
    try:
        # what other steps keep in report/ (sections, their charts) comes along; temp files do not
        shutil.copytree(final, new, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        paths = _write_set(new, report, photos or {})
        _swap(new, final)
    except OSError as e:
        if e.filename and Path(e.filename).is_relative_to(new):  # name the file the user knows
            e.filename = str(final / Path(e.filename).relative_to(new))
        raise
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return {k: final / p.relative_to(new) for k, p in paths.items()}


def _write_set(out: Path, report: dict[str, Any], photos: Mapping[str, Path]) -> dict[str, Path]:
    from . import report_html
    from .report_md import charts, markdown, method

    sections = sorted((out / "sections").glob("*.md"))
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    paths |= charts(report, out, photos)
    write_atomic(paths["json"], json_text(report))
    write_atomic(paths["csv"], to_csv(report))
    drawn = [k for k in ("latency", "accuracy", "throughput", "sustained", "layers", "boxes") if k in paths]
    write_atomic(paths["md"], markdown(report, sections=sections, drawn=drawn))
    paths["html"] = report_html.write(report, out, sections, method(report))
    return paths


def _swap(new: Path, final: Path) -> None:
    """``new`` becomes ``final``; the old one is put back if that fails (two renames on one filesystem)."""
    old = new.with_name(new.name + ".old")
    try:
        final.rename(old)
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        # report/ is a mount point (a compose volume): it cannot be renamed, so its entries are replaced one
        # by one. The set was written in full beforehand, so a full disk has already failed before this.
        _replace_entries(new, final)
        return
    try:
        new.rename(final)
    except BaseException:
        old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _replace_entries(new: Path, final: Path) -> None:
    for src in sorted(new.iterdir()):
        dest = final / src.name
        if src.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest)
        else:
            tmp = final / f".{src.name}.swap"
            shutil.copyfile(src, tmp)  # new may sit on another filesystem: copy beside dest, then rename
            tmp.replace(dest)
