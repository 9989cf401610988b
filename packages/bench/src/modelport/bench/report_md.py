"""The human side of the report: Markdown, PNG charts, the terminal table."""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from modelport.common.artifacts import write_atomic
from modelport.common.display import settings_text, shown
from modelport.common.machine import NOT_EXPOSED
from modelport.common.timing import DRIFT_FLAG, UNSTEADY

# Markdown's active characters; "_" only at a word's edge (inside a word it never emphasises). Backticks
# stay: a code span shows its text as it is (never HTML), and reasons name commands in them.
_ACTIVE = re.compile(r"[\\*\[\]<>|&#~!]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_text(value: object) -> str:
    """Any value from a result, label or machine as Markdown text shown as it is: one line, every active
    character but backticks backslash-escaped (no raw HTML, link, emphasis or table cell break; report_html
    reads them back)."""
    return _ACTIVE.sub(lambda m: "\\" + m.group(0), " ".join(str(value).split()))


def md_code(value: object) -> str:
    """A value as a code span (backslashes are literal there: only a backtick could end it)."""
    return "`" + " ".join(str(value).split()).replace("`", "'") + "`"


def _f(v: object, fmt: str, dash: str = "–") -> str:
    return dash if v is None else format(v, fmt)


def _size(b: float | None) -> str:
    return "–" if b is None else f"{b / 1e6:.2f} MB"


def _ranked(results: list[dict[str, Any]]) -> list[tuple[int | None, dict[str, Any]]]:
    """Each model's rows together (a detector's milliseconds are not a classifier's), measured ones fastest
    first with their rank in the model, then the rest."""
    out: list[tuple[int | None, dict[str, Any]]] = []
    for model in dict.fromkeys(e.get("model") for e in results):
        mine = [e for e in results if e.get("model") == model]
        timed = sorted((e for e in mine if e["latency_ms"]), key=lambda e: e["latency_ms"]["median"])
        out += [(i, e) for i, e in enumerate(timed, 1)] + [(None, e) for e in mine if not e["latency_ms"]]
    return out


def detectors(report: dict[str, Any]) -> bool:
    """Some row is a detector's (judged by its boxes): the report adds their columns."""
    return any((e["agreement"] or {}).get("detect") for e in report["results"])


def _detect_cells(e: dict[str, Any]) -> dict[str, str]:
    det, post = (e["agreement"] or {}).get("detect"), e.get("postprocess_ms")
    if not det:
        return {"f1": "–", "map": "–", "post": _f((post or {}).get("median"), ".2f")}
    mean_ap = "–" if det["map"] is None else f"{det['map']:.3f} / {det['ap50']:.3f}"
    if det["map"] is not None and det["source_map"] is not None:
        mean_ap += f" (source {det['source_map']:.3f})"
    return {"f1": f"{det['f1']:.3f}", "map": mean_ap, "post": _f((post or {}).get("median"), ".2f")}


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Ranked rows: per model, measured backends fastest first, then the rest."""
    out = []
    for i, e in _ranked(report["results"]):
        lat, a, h = e["latency_ms"] or {}, e["agreement"], e["headline"]
        boxes = bool(a and a.get("detect"))  # a detector's raw-tensor top-1 and cosine are not its verdict
        if e["status"] != "ok":
            status = f"{e['status']}: {e['reason']}"
            if e.get("last_ok"):
                status += f" (last good result from {e['last_ok']['created_utc']} kept in {e['last_ok']['path']})"
        else:
            status = "ok" if lat else f"ok ({e['latency_note'] or 'no latency'})"
            if e.get("under_load"):
                status += f" (UNDER LOAD: {e['under_load']})"
            if e.get("unsteady"):
                status += f" (UNSTEADY: {e['unsteady']})"
            if (e.get("sustained") or {}).get("flag"):
                status += f" (SUSTAINED RUN: {e['sustained']['flag']})"
            if e.get("speed_note"):
                status += f" ({e['speed_note']})"
        out.append(
            {
                "rank": str(i) if i is not None else "–",
                "backend": e["name"],
                "model": e.get("model") or "–",
                "device": e.get("device_key") or "–",
                "status": status,
                "median": _f(lat.get("median"), ".2f"),
                "p90": _f(lat.get("p90"), ".2f"),
                "fps": _f(e["fps"], ".1f"),
                "best": f"{e['best_fps']:.1f} @ {e['best_concurrency']}" if e.get("best_fps") else "–",
                "speed": _f(e["relative_speed"], ".2f") + ("x" if e["relative_speed"] else ""),
                "size": _size(e["size_bytes"]),
                "top1": f"{h['label']} ({h['confidence']:.3f})" if h else "–",
                "agree": f"{a['top1']:.0%} of {a['images']}" if a and not boxes else "–",
                "cos": f"{a['cosine_min']:.4f} / {a['cosine_mean']:.4f}"
                if a and not boxes
                else ("not computed" if e.get("agreement_note") else "–"),
                **_detect_cells(e),
            }
        )
    return out


HEADERS = {
    "rank": "#",
    "backend": "backend",
    "status": "status",
    "median": "median ms",
    "p90": "p90 ms",
    "fps": "FPS",
    "best": "best FPS @ concurrency",
    "speed": "vs source",
    "size": "size",
    "top1": "headline top-1",
    "agree": "top-1 agreement",
    "cos": "cosine min / mean",
}


# A detector's verdict: its boxes against the source's, COCO mAP with annotations, and its decode + NMS time.
DETECT_HEADERS = {"f1": "boxes F1 vs source", "map": "mAP / AP50", "post": "postprocess ms"}


def headers(report: dict[str, Any]) -> dict[str, str]:
    """The columns: model and device only when the report spans several."""
    extra = {
        k: k for k, many in (("model", len(report.get("models", [])) > 1), ("device", len(report.get("devices", {})) > 1)) if many
    }
    boxes = DETECT_HEADERS if detectors(report) else {}
    return {
        "rank": "#",
        "backend": "backend",
        **extra,
        **{k: v for k, v in HEADERS.items() if k not in ("rank", "backend")},
        **boxes,
    }


def several_models(report: dict[str, Any]) -> bool:
    """A merged report of several models: no claim about "the" source model holds for every row."""
    return len(report.get("models", [])) > 1


def reference_text(report: dict[str, Any]) -> str:
    """The reference as a phrase: "the source model (TFLite INT8, run in the TFLite interpreter)"."""
    if several_models(report):
        return "each row's own source model, in its own runtime (models: " + ", ".join(f"`{m}`" for m in report["models"]) + ")"
    src = report.get("source")
    return f"the source model ({src['name']}, run in {src['runtime']})" if src else "the source model"


def terminal_table(report: dict[str, Any]) -> Table:
    t = Table(title=f"modelport report (agreement vs {reference_text(report)})")
    cols = headers(report)
    for key, title in cols.items():
        t.add_column(title, justify="right" if key in ("median", "p90", "fps", "best", "speed", "size") else "left")
    for r in rows(report):
        t.add_row(*[Text(r[k]) for k in cols])  # plain text: a bracket in a label is not rich markup
    return t


def markdown(report: dict[str, Any], sections: list[Path], drawn: Collection[str] = ("latency", "accuracy")) -> str:
    lines = ["# modelport results", ""]
    devices = report.get("devices") or {report["machine"].get("device_key", "this machine"): report["machine"]}
    for key, m in devices.items():
        lines.append(
            f"Machine{f' {md_code(key)}' if len(devices) > 1 else ''}: {md_text(m.get('cpu'))}, {md_text(m.get('cores'))} cores, "
            f"{md_text(m.get('memory_gb'))} GB, {md_text(m.get('os'))}, Python {md_text(m.get('python'))}.  "
        )
    lines += ["", method(report), ""]
    cols = headers(report)
    lines.append("| " + " | ".join(cols.values()) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows(report):
        lines.append("| " + " | ".join(md_text(r[k]) for k in cols) + " |")
    lines += matrix_md(report)
    lines += [""]
    for name, why in (("latency", "no backend was timed"), ("accuracy", "no row has agreement numbers")):
        lines += [f"![{name}]({name}.png)" if name in drawn else f"No {name} chart: {why}.", ""]
    lines += beyond(report, "throughput" in drawn)
    lines += sustained_section(report, "sustained" in drawn)
    lines += slowest_layers(report, "layers" in drawn)
    lines += detector_boxes(report, "boxes" in drawn)
    lines += ["## Settings and versions", ""]
    for e in report["results"]:
        if e["status"] == "ok":
            la = e["load_avg"]
            load = f"; load avg {shown(la.get('before'), '–')} -> {shown(la.get('after'), '–')}" if la else ""
            versions = ", ".join(f"{k} {v}" for k, v in e["tool_versions"].items())
            settings = settings_text(e["settings"])
            extra = "".join(
                f"; {k}: median {t['median']:.2f} / p90 {t['p90']:.2f} ms" for k, t in e["extra_timings"].items()
            )  # e.g. ncnn threads_1, TensorRT gpu_compute
            detail = md_text(f"{e['env']} env; {versions}): {settings}{load}{extra}")
            lines.append(f"- **{md_text(e['name'])}** ({detail}")
    notes = list(report.get("notes", [])) + [f"{e['name']}: {n}" for e in report["results"] for n in e["notes"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {md_text(n)}" for n in notes]
    for s in sections:
        lines += ["", s.read_text(encoding="utf-8").rstrip()]
    if report.get("pipeline_time"):  # footer: wall time per step (depth_report.pipeline_time)
        lines += [""] + report["pipeline_time"]
    return "\n".join(lines) + "\n"


def _mb(b: int | None) -> str:
    return "–" if b is None else f"{b / 2**20:.1f}"


def beyond(report: dict[str, Any], drawn: bool) -> list[str]:
    """Throughput, cold start, memory, the whole frame and run conditions: a table of the rows that have any."""
    measured = [e for e in report["results"] if e.get("throughput") or e.get("cold_start") or e.get("frame_ms")]
    if not measured:
        return []
    out = [
        "## Throughput, cold start, memory, whole frame",
        "",
        "Throughput: concurrent batch-1 requests for a fixed time at each concurrency (p50/p90/p99: the latency each "
        "request saw). Load and first inference: in a fresh process per row; its RSS before loading (interpreter + "
        "toolchain + input) and its high-water from there through load and the inferences: the model's share is the "
        "difference. Frame: medians per stage of decode (the image file) + preprocess (a detector's letterbox) + inference + postprocess (top-5; a detector's decode + NMS).",
        "",
        "| backend | FPS @ concurrency (p50 / p90 / p99 ms) | load ms | first inference ms | RSS before load MiB "
        "| peak RSS MiB | model MiB | frame ms (decode + pre + infer + post) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in measured:
        sweep = "; ".join(
            f"{t['fps']:.1f} @ {t['concurrency']} ({t['p50']:.2f} / {t['p90']:.2f} / {t['p99']:.2f})"
            for t in e.get("throughput") or []
        )
        c, f = e.get("cold_start") or {}, e.get("frame_ms")
        frame = (
            f"{f['total']:.2f} ({f['decode']:.2f} + {f['preprocess']:.2f} + {f['infer']:.2f} + {f['postprocess']:.2f})"
            if f
            else "–"
        )
        cells = [
            e["name"],
            sweep or "–",
            _f(c.get("load_ms"), ".1f"),
            _f(c.get("first_infer_ms"), ".2f"),
            _mb(c.get("baseline_rss_bytes")),
            _mb(c.get("peak_rss_bytes")),
            _mb(c.get("model_rss_bytes")),
            frame,
        ]
        out.append("| " + " | ".join(md_text(x) for x in cells) + " |")
    how = [e for e in measured if e.get("throughput")]
    if how:
        out += [
            "",
            "How the concurrent requests ran (the toolchain's own mechanism, at the highest level; threads per request at each):",
            "",
        ]
        for e in how:
            top = max(e["throughput"], key=lambda t: t["concurrency"])
            per = ", ".join(
                f"{_f(t.get('threads_per_worker'), 'd', 'not a CPU count')} @ {t['concurrency']}" for t in e["throughput"]
            )
            out.append(f"- {md_text(e['name'])}: {md_text(top['mechanism'])}; threads per request {md_text(per)}")
    out += ["", "![throughput](throughput.png)" if drawn else "No throughput chart: no row was swept.", ""]
    conditioned = [e for e in measured if e.get("conditions")]
    if conditioned:
        out += ['Run conditions (sysfs; "not exposed here" where the machine hides them):', ""]
        out += [f"- **{md_text(e['name'])}**: {md_text(conditions_text(e['conditions']))}" for e in conditioned]
        out.append("")
    return out


def sustained_section(report: dict[str, Any], drawn: bool) -> list[str]:
    """The rows run back to back for ``[bench] sustained_seconds``: p50/p99 of the first and last window, and a
    flag where the latency drifted or the CPU throttled (the row's other numbers then describe a moment)."""
    ran = [e for e in report["results"] if e.get("sustained")]
    if not ran:
        return []
    out = [
        "## Sustained run",
        "",
        "Batch-1 inferences back to back for the configured time, p50 and p99 per window; drift = last window's p50 / "
        f"first's. Flagged when it is off by more than {DRIFT_FLAG:.0%} or the kernel counted thermal throttle events.",
        "",
        "| backend | seconds | windows | p50 first -> last ms | p99 first -> last ms | drift | throttling | flag |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in ran:
        s = e["sustained"]
        throttled = NOT_EXPOSED if s["throttled"] is None else f"{s['throttled']} events"
        mhz = f"; MHz {s['mhz_before']} -> {s['mhz_after']}" if NOT_EXPOSED not in (s["mhz_before"], s["mhz_after"]) else ""
        load = f" ({s['under_load']})" if s.get("under_load") else ""
        cells = [
            e["name"],
            f"{s['seconds']:g}",
            f"{len(s['windows'])} x {s['window_s']:g} s",
            f"{s['first_p50']:.3f} -> {s['last_p50']:.3f}",
            f"{s['first_p99']:.3f} -> {s['last_p99']:.3f}",
            f"{s['drift']:.2f}x",
            throttled + mhz,
            (s.get("flag") or "–") + load,
        ]
        out.append("| " + " | ".join(md_text(x) for x in cells) + " |")
    out += ["", "![sustained](sustained.png)" if drawn else "No sustained-run chart.", ""]
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def slowest_layers(report: dict[str, Any], drawn: bool) -> list[str]:
    """The three slowest layers per row and its share of quantize / dequantize / reorder work, or why the
    toolchain gives no per-layer time; ``drawn``: layers.png shows each row's five slowest."""
    profiled = [e for e in report["results"] if e.get("layer_profile")]
    if not profiled:
        return []
    out = [
        "## Slowest layers",
        "",
        "Per-layer time from each toolchain's own profiler (mean per inference while profiling, which adds its own "
        "overhead: compare layers within a row, not rows by it). Layers are named by their ONNX node in "
        "onnx/model.onnx (the per-layer INT8 analysis's names) where the toolchain's name maps to one, else by the "
        r"toolchain's own (marked \*). Q / DQ / reorder: the share of the summed layer time spent quantizing, "
        "dequantizing and moving data between layouts or precisions.",
        "",
        "| backend | slowest layers: ms (share) | Q / DQ / reorder | layers (sum ms) | profiler |",
        "|---|---|---|---|---|",
    ]
    several = len(report.get("devices") or {}) > 1 or several_models(report)
    for e in profiled:
        p = e["layer_profile"]
        name = f"{e['name']} ({e['model']}, {e['device_key']})" if several else e["name"]
        if p.get("reason"):
            out.append(f"| {md_text(name)} | {md_text('not measured: ' + p['reason'])} | – | – | – |")
            continue
        top = "; ".join(
            f"{md_text(t['name'])}{'' if t['onnx'] else chr(92) + '*'} {md_text(t['op'])}: {t['ms']:.3f} ({_pct(t['share'])})"
            for t in p["slowest"][:3]
        )
        sh = p.get("shares") or {}
        split = " / ".join(_pct(sh.get(c)) for c in ("quantize", "dequantize", "reorder"))
        cells = [md_text(name), top, split, f"{p['layers']} ({_f(p.get('total_ms'), '.2f')})", md_text(p["how"])]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if drawn:
        out += ["![layers](layers.png)", ""]
    return out


def conditions_text(c: dict[str, Any]) -> str:
    def mhz(v: str) -> str:
        return v if v == NOT_EXPOSED else f"{v} MHz"

    def thermal(t: dict[str, Any] | str) -> str:
        return ", ".join(f"{k} {v:g} C" for k, v in t.items()) if isinstance(t, dict) else t

    return (
        f"governor {c['governor']}; frequency {mhz(c['cur_mhz'])} (max {mhz(c['max_mhz'])}); SMT {c['smt']}; "
        f"thermal {thermal(c['thermal_c'])} -> {thermal(c['thermal_c_after'])}; "
        f"load {c['load_before']:g} -> {c['load_after']:g}; throttled: {c['throttled']}"
    )


def matrix_md(report: dict[str, Any]) -> list[str]:
    """Models x backends, one table per device (only when the report spans several of either)."""
    grid = report.get("matrix") or {}
    models = report.get("models", [])
    if len(grid) < 2 and len(models) < 2:
        return []
    keys = list(dict.fromkeys(e["key"] for e in report["results"]))
    out = [
        "",
        "## Models x backends, per device",
        "",
        "Cell: median ms / cosine min vs the reference (a detector's: boxes F1 vs its source), or the status. "
        "Speed compares within a device only.",
        "",
    ]
    for device, by_model in grid.items():
        out += [f"**{md_text(device)}**", "", "| model | " + " | ".join(map(md_text, keys)) + " |", "|---|" + "---|" * len(keys)]
        for model in models:
            cells = []
            for k in keys:
                c = by_model.get(model, {}).get(k)
                if c is None:
                    cells.append("")
                elif c["status"] != "ok":
                    cells.append(c["status"])
                else:
                    agree = _f(c["cosine_min"], ".4f", "") or (f"F1 {c['f1']:.3f}" if c.get("f1") is not None else "")
                    cells.append(" / ".join(x for x in (_f(c["median_ms"], ".2f", ""), agree) if x) or "ok")
            out.append(f"| {md_text(model)} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def method(report: dict[str, Any]) -> str:
    """How the numbers were taken, saying only what is known (no 'None' for a missing piece)."""
    headline = next((e["headline"]["image"] for e in report["results"] if e["headline"]), None)
    runs = sorted({e["latency_runs"] for e in report["results"] if e["latency_runs"]})
    timed = [f"headline image {md_code(headline)}"] if headline else []
    if runs:
        timed.append(f"{'/'.join(map(str, runs))} timed runs after warm-up")
    latency = f"Latency: batch 1, {', '.join(timed)}." if runs else "Latency: no backend was timed."
    agreed = [e["agreement"]["images"] for e in report["results"] if e["agreement"]]
    missing = [e for e in report["results"] if e["status"] == "ok" and not e["agreement"] and e.get("agreement_note")]
    src = {} if several_models(report) else report.get("source") or {}
    if report["reference"] and agreed:
        outputs = f"; its outputs are {src['outputs']}" if src.get("outputs") else ""
        agreement = f"Agreement: {max(agreed)} eval images vs {md_text(reference_text(report) + outputs)}."
    else:
        agreement = "Agreement: not computed (no reference result)."
    if missing:
        agreement += (
            f" Agreement NOT computed for {md_text(', '.join(e['name'] for e in missing))}: "
            f"{md_text(missing[0]['agreement_note'].removeprefix('agreement not computed: '))}."
        )
    loaded = [e["name"] for e in report["results"] if e.get("under_load")]
    if loaded:
        latency += f" Taken under load (latency not trustworthy): {md_text(', '.join(loaded))}."
    wavering = [e["name"] for e in report["results"] if e.get("unsteady")]
    if wavering:
        latency += (
            f" Unsteady (the row's own timings disagree by {UNSTEADY:g}x or more; its median is one of the machine's "
            f"modes): {md_text(', '.join(wavering))}."
        )
    f = report.get("floors")
    if not report.get("verify", True):
        check = "Verification is OFF ([convert] verify = false): no conversion was checked against the floors."
    elif f:
        check = (
            f"Floors ([accuracy]): FP32/FP16 top-1 >= {f['fp_top1_min']:.0%}, cosine min >= {f['fp_cosine_min']}; "
            f"INT8 top-1 >= {f['int8_top1_min']:.0%}, cosine min >= {f['int8_cosine_min']}, "
            f"mean >= {f['int8_cosine_mean_min']}."
        )
        if detectors(report) and "detect_fp_f1_min" in f:
            check += (
                f" Detectors: FP32/FP16 boxes F1 vs source >= {f['detect_fp_f1_min']}, mAP within "
                f"{f['detect_fp_map_drop_max']} of the source's; INT8 F1 >= {f['detect_int8_f1_min']}, mAP >= "
                f"{f['detect_int8_map_ratio_min']:.0%} of the source's."
            )
        if src.get("all_rows_int8_floors"):
            check += " The source is quantized, so every row (float ones too) is held to the INT8 floors."
    else:
        check = ""
    return f"{latency} {agreement} {check}".rstrip()


def charts(report: dict[str, Any], out: Path, photos: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """latency.png and accuracy.png, each only when it has something to show (a stale one is removed);
    ``photos``: the eval photos by file name, under the detector rows' boxes in boxes.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    panels = box_panels(report)
    if panels:
        paths["boxes"] = _save(_boxes(plt, panels, photos or {}), out / "boxes.png", plt)
    else:
        (out / "boxes.png").unlink(missing_ok=True)
    swept = [e for e in report["results"] if e.get("throughput")]
    if swept:
        several = len(report.get("devices") or {}) > 1
        paths["throughput"] = _save(_throughput(plt, swept, several), out / "throughput.png", plt)
    else:
        (out / "throughput.png").unlink(missing_ok=True)
    ran = [e for e in report["results"] if e.get("sustained")]
    if ran:
        paths["sustained"] = _save(_sustained(plt, ran), out / "sustained.png", plt)
    else:
        (out / "sustained.png").unlink(missing_ok=True)
    profiled = [e for e in report["results"] if (e.get("layer_profile") or {}).get("slowest")]
    if profiled:
        paths["layers"] = _save(_layers(plt, profiled, len(report.get("devices") or {}) > 1), out / "layers.png", plt)
    else:
        (out / "layers.png").unlink(missing_ok=True)
    timed = sorted((e for e in report["results"] if e["latency_ms"]), key=lambda e: e["latency_ms"]["median"])
    agreed = [e for e in report["results"] if e["agreement"] and e["key"] != report["reference"]]
    for name, rows_ in (("latency", timed), ("accuracy", agreed)):
        if not rows_:
            (out / f"{name}.png").unlink(missing_ok=True)
    if timed:
        paths["latency"] = _save(_latency(plt, timed), out / "latency.png", plt)
    if agreed:
        paths["accuracy"] = _save(_accuracy(plt, agreed, report.get("floors") or {}), out / "accuracy.png", plt)
    return paths


LOG_AXIS_RATIO = 10  # slowest / fastest median beyond which a linear axis squashes the fast bars


def _latency(plt: Any, timed: list[dict[str, Any]]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(timed) + 1.6))
    names = [e["name"] for e in timed]
    med = [e["latency_ms"]["median"] for e in timed]
    p90 = [max(0.0, e["latency_ms"]["p90"] - e["latency_ms"]["median"]) for e in timed]
    ax.barh(names, med, xerr=[[0] * len(med), p90], color="#4c72b0", capsize=3)
    log = max(med) / max(min(med), 1e-9) > LOG_AXIS_RATIO
    if log:
        ax.set_xscale("log")
    right = max(m + w for m, w in zip(med, p90, strict=True))
    ax.set_xlim(min(med) / 2 if log else 0, right * (4 if log else 1.25))  # room for the value labels
    for y, (v, w) in enumerate(zip(med, p90, strict=True)):
        ax.text(v + w, y, f"  {v:.2f}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("latency, ms (bar: median, whisker: p90)" + (", log scale" if log else ""))
    ax.set_title("Batch-1 latency")
    return fig


def _throughput(plt: Any, swept: list[dict[str, Any]], several_devices: bool = False) -> Any:
    """Per backend, FPS against p90 latency at each concurrency (points labelled with it): one panel each,
    so no colour has to tell backends apart."""
    cols = min(3, len(swept))
    nrows = -(-len(swept) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, e in zip(axes.flat, swept, strict=False):
        pts = sorted(e["throughput"], key=lambda t: t["concurrency"])
        fps, p90 = [t["fps"] for t in pts], [t["p90"] for t in pts]
        ax.plot(p90, fps, marker="o", color="#4c72b0")
        for t in pts:
            ax.annotate(f"x{t['concurrency']}", (t["p90"], t["fps"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlim(0, max(p90) * 1.3)
        ax.set_ylim(0, max(fps) * 1.25)
        ax.set_title(e["name"] + (f"\n{e['device_key']}" if several_devices else ""), fontsize=9)
        ax.set_xlabel("p90 latency, ms", fontsize=8)
        ax.set_ylabel("inferences/s", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(swept) :]:
        ax.set_visible(False)
    fig.suptitle("Throughput vs latency (xN: concurrent requests)")
    fig.tight_layout()
    return fig


def _sustained(plt: Any, ran: list[dict[str, Any]]) -> Any:
    """Per row, p50 and p99 of each window against the time it started: one panel each."""
    cols = min(3, len(ran))
    nrows = -(-len(ran) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, e in zip(axes.flat, ran, strict=False):
        windows = e["sustained"]["windows"]
        t = [w["start_s"] for w in windows]
        ax.plot(t, [w["p50"] for w in windows], marker="o", color="#4c72b0", label="p50")
        ax.plot(t, [w["p99"] for w in windows], marker="o", color="#c44e52", label="p99")
        ax.set_ylim(0, max(w["p99"] for w in windows) * 1.25)
        flag = e["sustained"].get("flag")
        ax.set_title(e["name"] + (f"\n{flag}" if flag else ""), fontsize=9)
        ax.set_xlabel("window start, s", fontsize=8)
        ax.set_ylabel("latency, ms", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ran) :]:
        ax.set_visible(False)
    fig.suptitle("Sustained run: latency per window")
    fig.tight_layout()
    return fig


LAYER_BARS = 5
_CATEGORY_COLOURS = {"quantize": "#c44e52", "dequantize": "#dd8452", "reorder": "#8172b3", "other": "#4c72b0"}


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]  # the end tells the layers of a block apart


def _layers(plt: Any, profiled: list[dict[str, Any]], several_devices: bool = False) -> Any:
    """Per row, its slowest layers in ms under the profiler, coloured by kind of work: one panel each."""
    cols = min(2, len(profiled))
    nrows = -(-len(profiled) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 2.4 * nrows + 0.6), squeeze=False)
    for ax, e in zip(axes.flat, profiled, strict=False):
        p = e["layer_profile"]
        top = p["slowest"][:LAYER_BARS]
        ms = [t["ms"] for t in top]
        ax.barh(range(len(top)), ms, color=[_CATEGORY_COLOURS.get(t["category"], "#4c72b0") for t in top])
        ax.set_yticks(range(len(top)), [_short(t["name"]) for t in top], fontsize=7)
        for y, t in enumerate(top):
            ax.text(t["ms"], y, f" {t['ms']:.3f} ({100 * t['share']:.0f}%)", va="center", fontsize=7)
        ax.set_xlim(0, max(ms) * 1.45 if max(ms) > 0 else 1)
        ax.invert_yaxis()
        sh = p.get("shares") or {}
        split = " / ".join(f"{100 * sh.get(c, 0):.1f}%" for c in ("quantize", "dequantize", "reorder"))
        where = f"\n{e['device_key']}" if several_devices else ""
        ax.set_title(f"{e['name']}{where}: Q / DQ / reorder {split}", fontsize=9)
        ax.set_xlabel("ms per inference (profiled)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(profiled) :]:
        ax.set_visible(False)
    fig.suptitle("Slowest layers (red: quantize, orange: dequantize, purple: reorder)", fontsize=10)
    fig.tight_layout()
    return fig


def _accuracy(plt: Any, agreed: list[dict[str, Any]], floors: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(agreed) + 2.2))
    names = [e["name"] for e in agreed]
    mins = [e["agreement"]["cosine_min"] for e in agreed]
    ax.barh(names, [e["agreement"]["cosine_mean"] for e in agreed], color="#55a868", label="cosine mean")
    ax.scatter(mins, names, color="#c44e52", zorder=3, label="cosine min")
    # Each floor beside the statistic it bounds: the mean floor for the bars, the min floor for the points.
    if "int8_cosine_mean_min" in floors:
        ax.axvline(
            floors["int8_cosine_mean_min"],
            ls="--",
            color="#2d6a3e",
            lw=1,
            label=f"INT8 floor, mean ({floors['int8_cosine_mean_min']})",
        )
    if "int8_cosine_min" in floors:
        ax.axvline(
            floors["int8_cosine_min"], ls=":", color="#c44e52", lw=1.2, label=f"INT8 floor, min ({floors['int8_cosine_min']})"
        )
    lo = min([*mins, floors.get("int8_cosine_min", 0.95)])
    ax.set_xlim(max(-1.0, lo - 0.01), 1.0005)
    ax.invert_yaxis()
    ax.set_xlabel("cosine similarity of outputs vs the reference")
    ax.set_title("Agreement with the reference", pad=26)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)  # above: never on a bar
    return fig


CLASS_AP_ROWS = 10  # the categories with most annotations on the eval photos


def _detector_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in report["results"] if (e.get("agreement") or {}).get("detect")]


def box_panels(report: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """What boxes.png draws: per model, its source's boxes (title, None, the photo) then each of its rows'
    (title, the row, the photo), on the headline photo the rows stored."""
    out: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
    several = len(report.get("models") or []) > 1
    devices = len(report.get("devices") or {}) > 1
    for model in dict.fromkeys(e["model"] for e in _detector_rows(report)):
        rows_ = [e for e in _detector_rows(report) if e["model"] == model and e["agreement"]["detect"].get("photo")]
        if not rows_:
            continue
        prefix = f"{model}: " if several else ""
        out.append((f"{prefix}source (reference)", None, rows_[0]["agreement"]["detect"]["photo"]))
        out += [
            (f"{prefix}{e['name']}" + (f" ({e['device_key']})" if devices else ""), e, e["agreement"]["detect"]["photo"])
            for e in rows_
        ]
    return out


def _boxes(plt: Any, panels: list[tuple[str, dict[str, Any] | None, dict[str, Any]]], photos: Mapping[str, Path]) -> Any:
    """Each panel the headline photo (a blank canvas of its size when the photo is not here, e.g. a row
    merged from another machine) with boxes coloured by class, labelled with class name and score."""
    import numpy as np
    from PIL import Image

    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.0 * nrows), squeeze=False)
    from matplotlib.colors import hsv_to_rgb

    def colour(cls: int) -> Any:
        # golden-ratio hues: neighbouring and far-apart class indices (COCO's 80) get distinct colours,
        # all dark enough for white label text
        return hsv_to_rgb(((cls * 0.618034) % 1.0, 0.8, 0.8))

    for ax, (title, row, photo) in zip(axes.flat, panels, strict=False):
        w, h = int(photo["width"]), int(photo["height"])
        path = photos.get(str(photo["image"]))
        shown_photo = False
        if path is not None and path.is_file():
            try:
                with Image.open(path) as im:
                    if im.size == (w, h):  # the same name, another photo: never boxes on the wrong one
                        ax.imshow(np.asarray(im.convert("RGB")))
                        shown_photo = True
            except (OSError, ValueError, Image.DecompressionBombError):
                pass  # an unreadable photo: the boxes on a blank canvas, as for a photo that is not here
        if not shown_photo:
            ax.set_facecolor("#eeeeee")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        boxes = photo["source"] if row is None else photo["boxes"]
        for b in boxes:
            x1, y1, x2, y2 = b["box"]
            c = colour(int(b["cls"]))
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, lw=1.5))
            # parse_math off: a label is text, a "$" in it is never mathtext
            ax.text(x1, y1, f"{b['label']} {b['score']:.2f}", color="white", fontsize=6, va="bottom", parse_math=False,
                    bbox={"facecolor": c, "edgecolor": "none", "pad": 1, "alpha": 0.85})  # fmt: skip
        where = "" if shown_photo else " (photo not here)"
        ax.set_title(f"{title}: {len(boxes)} boxes{where}", fontsize=9, parse_math=False)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    image = panels[0][2]["image"]
    fig.suptitle(f"Boxes on {image} (score >= agreement score; colour: class)", fontsize=10, parse_math=False)
    fig.tight_layout()
    return fig


def detector_boxes(report: dict[str, Any], drawn: bool) -> list[str]:
    """The headline photo's boxes per detector row (boxes.png) and COCO AP@[.5:.95] per class: the classes
    with most annotations on the eval photos, a column per row."""
    dets = _detector_rows(report)
    if not dets:
        return []
    out = ["## Detector boxes and per-class AP", ""]
    out += ["![boxes](boxes.png)" if drawn else "No boxes chart: no detector row stored its headline photo's boxes.", ""]
    rated = [e for e in dets if e["agreement"]["detect"].get("class_ap")]
    if not rated:
        return out + ["No per-class AP: no detector row has COCO annotations ([detect] annotations).", ""]
    several = len({e["model"] for e in rated}) > 1
    for model in dict.fromkeys(e["model"] for e in rated):
        mine = [e for e in rated if e["model"] == model]
        counts: dict[str, int] = {}
        for e in mine:
            for c in e["agreement"]["detect"]["class_ap"]:
                counts[c["name"]] = max(counts.get(c["name"], 0), int(c["instances"]))
        top = sorted(counts, key=lambda n: (-counts[n], n))[:CLASS_AP_ROWS]
        aps = [{c["name"]: c["ap"] for c in e["agreement"]["detect"]["class_ap"]} for e in mine]
        out += [
            f"COCO AP@[.5:.95] per class{f' ({md_code(model)})' if several else ''}: the {len(top)} of {len(counts)} "
            "annotated classes with most instances on the eval photos.",
            "",
            "| class | instances | " + " | ".join(md_text(e["name"]) for e in mine) + " |",
            "|---|---|" + "---|" * len(mine),
        ]
        out += [f"| {md_text(n)} | {counts[n]} | " + " | ".join(_f(a.get(n), ".3f") for a in aps) + " |" for n in top]
        out.append("")
    return out


def _save(fig: Any, path: Path, plt: Any) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path
