"""``report/sections/int8.md`` + charts: per-layer error of every INT8 backend and what recovery kept.

Reads only ``analysis/<backend>.json`` (common/layer_analysis.py) and ``recover/<backend>.json``
(common/recovery.py), written by whichever env ran them, so the report needs none of their toolchains.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from modelport.common.artifacts import ArtifactStore, write_atomic
from modelport.common.backends import backends
from modelport.common.calibration import calibration_text
from modelport.common.config import QuantizationConfig
from modelport.common.layer_analysis import TARGETS, worst
from modelport.common.layer_analysis import read as read_analysis
from modelport.common.recovery import REGION_SHARE, float_text, record_path, speed_text
from modelport.common.timing import meets_speedup

SECTION = "report/sections/int8.md"
LAYERS_PNG = "report/int8-layers.png"
WORST = 5


def _records(store: ArtifactStore) -> dict[str, dict[str, Any]]:
    out = {}
    for key in TARGETS:
        p = store.path(record_path(key))
        if p.is_file():
            out[key] = json.loads(p.read_text())
    return out


def local_model(store: ArtifactStore, models: list[str]) -> str | None:
    """Which of a report's models this folder's analyses and recovery records are of (its fetched source)."""
    source = store.current_source()
    return next((m for m in models if source and m.endswith("@" + source["sha256"][:12])), None)


def render(store: ArtifactStore, report: dict[str, Any] | None = None) -> Path | None:
    """The section; with ``report``, its benchmark comparisons come from the report's rows, per model and device."""
    analyses = {k: a for k in TARGETS if (a := read_analysis(store, k))}
    records = _records(store)
    path = store.path(SECTION)
    models = (report or {}).get("models", [])
    lines = ["## INT8: per-layer error and recovery", ""]
    if len(models) > 1 and (analyses or records):
        # A merged report spans several models: this folder's files describe one of them, or none in the report.
        mine = local_model(store, models)
        if mine is None:
            analyses, records = {}, {}
        else:
            lines += [f"Per-layer analysis and recovery below: model `{mine}` (this artifacts folder's).", ""]
    if not analyses and not records:
        path.unlink(missing_ok=True)  # nothing analysed in this artifacts folder (or of a model in this report)
        return None
    if analyses:
        lines += _layers_md(analyses)
        _layers_chart(analyses, store.path(LAYERS_PNG))
        lines += ["", f"![per-layer SQNR]({Path(LAYERS_PNG).name})", ""]
    default_floor = (report or {}).get("min_speedup") or QuantizationConfig().min_speedup
    lines += _speed_md(report["results"] if report else _result_files(store), default_floor)
    for key, rec in records.items():
        lines += _recovery_md(rec)
        if rec["searched"]:
            png = f"report/int8-recovery-{key}.png"
            _recovery_chart(rec, store.path(png))
            lines += ["", f"![{rec['display']} variants]({Path(png).name})", ""]
    write_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def _layers_md(analyses: dict[str, dict[str, Any]]) -> list[str]:
    names = {k: {r["node"] for r in a["layers"]} for k, a in analyses.items()}
    common = set.intersection(*names.values()) if names else set()
    lines = [
        "Each INT8 model against its FP32 twin on the eval images, per layer, named by the node names of "
        "`onnx/model.onnx` (a conv and its fused activation are one layer). Own SQNR = the noise the layer "
        "adds itself (lower = worse; what recovery keeps in float).",
        "",
        "| backend | layers | mapped how | images | seconds |",
        "|---|---|---|---|---|",
    ]
    for a in analyses.values():
        m = a["mapping"]
        lines.append(
            f"| {a['display']} | {len(a['layers'])} of {m.get('onnx_layers', '?')} | {m['how']} | "
            f"{len(a['images'])} | {a['seconds']} |"
        )
    lines += ["", f"{len(common)} layers line up across all {len(analyses)} backends.", ""]
    for a in analyses.values():
        lines += [
            f"Worst layers, {a['display']}:",
            "",
            "| layer | op | backend name | own SQNR dB | output SQNR dB | cosine min |",
            "|---|---|---|---|---|---|",
        ]
        for r in worst(a["layers"], WORST):
            lines.append(
                f"| `{r['node']}` | {r['op']} | `{r['backend_name']}` | {r['own_sqnr_db']:.1f} | "
                f"{r['sqnr_db_mean']:.1f} | {r['cosine_min']:.4f} |"
            )
        lines.append("")
    return lines


TWINS = {k: b.fp32_twin for k, b in backends().items() if b.fp32_twin}  # INT8 row -> its FP32 row


def _result_files(store: ArtifactStore) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"key": p.stem} for p in sorted(store.path("results").glob("*.json"))]


def _speed_md(rows: list[dict[str, Any]], min_speedup: float) -> list[str]:
    """Each benchmarked INT8 model against its FP32 twin of the same model on the same device, and the speed
    floor: judged on the recovery search's interleaved rounds when the row carries them, else on the one
    pair of bench medians (the same rule, ``timing.meets_speedup``, with a single round), saying which."""
    medians: dict[tuple[Any, ...], dict[str, float]] = {}
    speed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if r.get("status") == "ok" and (r.get("latency_ms") or {}).get("median"):
            group = (r.get("model", ""), r.get("device_key", ""))
            medians.setdefault(group, {})[r["key"]] = r["latency_ms"]["median"]
            if r.get("speed"):
                speed[(*group, r["key"])] = r["speed"]
    out = []
    for (model, device), median in sorted(medians.items()):
        where = f" (`{model}` on `{device}`)" if len(medians) > 1 else ""
        for int8, fp32 in TWINS.items():
            a, b = median.get(int8), median.get(fp32)
            if not (a and b):
                continue
            line = f"- {int8}{where}: median {a:.2f} ms vs {fp32} {b:.2f} ms: {b / a:.2f}x" + (
                " (**slower than its FP32 twin**)" if a > b else ""
            )
            s = speed.get((model, device, int8))
            if s and s.get("slow") is not None:
                judged = f"{s['speedup']:.2f}x in the recovery search's {s['rounds']} interleaved rounds"
                floor, meets = s["min_speedup"], not s["slow"]
            else:
                judged, floor, meets = (
                    "one pair of bench medians, not interleaved",
                    min_speedup,
                    meets_speedup([a], [b], min_speedup),
                )
            verdict = f"meets the {floor:.2f}x speed floor" if meets else f"**below the {floor:.2f}x speed floor**"
            out.append(f"{line}; {verdict} ({judged})")
    return (["INT8 against FP32 in the benchmark:", "", *out, ""]) if out else []


def _agree(a: dict[str, Any] | None) -> str:
    return "–" if not a else f"top-1 {a['top1']:.0%}, cosine min {a['cosine_min']:.4f} / mean {a['cosine_mean']:.4f}"


def _recovery_md(rec: dict[str, Any]) -> list[str]:
    v = {x["id"]: x for x in rec["variants"]}
    kept, default = v[rec["kept"]], v[rec["default"]]
    fp32 = (rec.get("timing") or {}).get("fp32_ms")
    head = f"**{rec['display']}**: "
    if not rec["searched"]:
        return [
            head
            + f"the configured variant ({kept['id']}) meets the floors: {_agree(kept['agreement'])}; no search. "
            + _speed_sentence(rec)
            + (" " + calibration_text(rec.get("calibration")) if rec.get("calibration") else ""),
            "",
        ]
    shown = kept["float_layers"][:6]
    floats = (
        ", ".join(f"`{n}`" for n in shown)
        + (
            f" and {len(kept['float_layers']) - len(shown)} more (all in `{record_path(rec['backend'])}`)"
            if len(kept["float_layers"]) > len(shown)
            else ""
        )
    ) or "nothing"
    out = [
        head
        + (
            f"BELOW the floors after {len(v)} variants ({'; '.join(kept['failures'])}); kept the best, "
            if rec["below_floors"]
            else f"{len(v)} variants tried, kept "
        )
        + f"`{kept['id']}` ({kept['method']}): {_agree(kept['agreement'])} (default `{default['id']}`: "
        f"{_agree(default['agreement'])}). {float_text(len(kept['float_layers']), kept.get('regions'), kept.get('float_share'))}: {floats}. Search wall time {rec['wall_seconds']:.0f} s "
        f"(budget {rec['budget_minutes']:g} min)."
    ]
    if kept.get("latency_ms") and default.get("latency_ms"):
        t = rec["timing"]
        out.append(
            f"Latency (best round's median of {t['rounds']} interleaved rounds, load {t['load_avg']['before']} -> "
            f"{t['load_avg']['after']}): kept {kept['latency_ms']:.2f} ms, INT8 default {default['latency_ms']:.2f} ms"
            + (f", FP32 {fp32:.2f} ms" if fp32 else "")
            + "."
            + (" **The kept INT8 model is slower than its FP32 twin.**" if fp32 and kept["latency_ms"] > fp32 else "")
            + (f" **UNDER LOAD: {t['under_load']}; these times are not trustworthy.**" if t.get("under_load") else "")
        )
        out.append(_speed_sentence(rec))
    else:
        out.append(
            "Latency: not measured here (simulator); among passing variants the one whose float layers cost least won "
            f"(their share of the MACs plus {REGION_SHARE:.0%} for each float region)."
        )
        out.append(_speed_sentence(rec))
    if rec.get("calibration"):
        out.append(calibration_text(rec["calibration"]))
    if kept.get("size_bytes") and default.get("size_bytes"):
        out.append(f"Size {kept['size_bytes'] / 1e6:.2f} MB vs {default['size_bytes'] / 1e6:.2f} MB for the default.")
    return [" ".join(out), ""]


def _speed_sentence(rec: dict[str, Any]) -> str:
    """The kept variant against the speed floor (records written before there was one say nothing)."""
    s = rec.get("speed")
    if not s:
        return ""
    if s.get("slow") is None:
        return f"Speed floor {s['min_speedup']:.2f}x: {s['note']}."
    if s["slow"]:
        return f"**{speed_text(s)}** (kept: no variant that meets the accuracy floors met it)."
    return f"Kept variant: {s['speedup']:.2f}x its FP32 twin in {s['rounds']} interleaved rounds, meets the {s['min_speedup']:.2f}x speed floor."


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _layers_chart(analyses: dict[str, dict[str, Any]], out: Path) -> None:
    plt = _plt()
    order = sorted({(r["index"], r["node"]) for a in analyses.values() for r in a["layers"]})
    pos = {node: i for i, (_, node) in enumerate(order)}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for a in analyses.values():
        rows = sorted(a["layers"], key=lambda r: pos[r["node"]])
        derived = " (from cosine)" if any("derived" in n for n in a.get("notes", [])) else ""
        ax.plot([pos[r["node"]] for r in rows], [r["sqnr_db_mean"] for r in rows], marker=".", lw=1, label=a["display"] + derived)
    ax.set_xlabel("layer, in onnx/model.onnx order")
    ax.set_ylabel("output SQNR vs FP32 twin, dB (mean over images)")
    ax.set_title("INT8 error per layer, backends side by side")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out, plt)


def _recovery_chart(rec: dict[str, Any], out: Path) -> None:
    plt = _plt()
    kept: dict[str, Any] = next((x for x in rec["variants"] if x["id"] == rec["kept"]), {})
    timed = bool(kept.get("latency_ms"))
    # the search times only the variants whose speed can matter (recovery.worth_timing): on a latency axis,
    # the float-layer variants below the floors have no place
    shown = [x for x in rec["variants"] if x.get("latency_ms")] if timed else rec["variants"]
    untimed = len(rec["variants"]) - len(shown)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for x in shown:
        xv = x["latency_ms"] if timed else len(x["float_layers"])
        y = (x["agreement"] or {}).get("cosine_min", 0)
        style = (
            {"marker": "*", "s": 220, "color": "#c44e52", "zorder": 3}
            if x["id"] == rec["kept"]
            else {"marker": "o", "s": 40, "color": "#55a868" if x["passes"] else "#4c72b0"}
        )
        ax.scatter([xv], [y], **style)
        label = x["id"] + (f" ({x['speedup']:.2f}x)" if x.get("speedup") else "")
        ax.annotate(label, (xv, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(rec["floors"]["int8_cosine_min"], ls="--", color="grey", lw=1, label="cosine min floor")
    fp32 = (rec.get("timing") or {}).get("fp32_ms")
    if timed and fp32:
        ax.axvline(fp32, ls=":", color="black", lw=1, label=f"FP32 twin {fp32:.2f} ms")
        if rec.get("min_speedup"):
            # Where a variant would sit at exactly the floor; the verdict itself is per round, not this line.
            floor = fp32 / rec["min_speedup"]
            ax.axvline(floor, ls="--", color="#c44e52", lw=1, label=f"speed floor {rec['min_speedup']:.2f}x ({floor:.2f} ms)")
    ax.set_xlabel("latency, ms (median)" if timed else "layers kept in float (no latency: simulator)")
    ax.set_ylabel("cosine min vs reference")
    ax.set_title(
        f"{rec['display']}: variants tried (star: kept)"
        + (f"\n{untimed} below-floor float variants not timed" if untimed else "")
    )
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out, plt)


def _save(fig: Any, path: Path, plt: Any) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
