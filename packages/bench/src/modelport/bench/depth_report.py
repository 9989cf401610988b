"""Render depth/*.json (labeled accuracy, sweeps, tuning, harness overhead) as report sections.

Called by `modelport report` before it appends report/sections/*.md: the measurements
come from several envs (tf-onnx, ncnn) as files, and only this env has matplotlib, so
tables and charts are made here, in one place. Also the pipeline wall-time footer.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from modelport.common.artifacts import ArtifactStore, write_atomic
from modelport.common.backends import rank
from modelport.common.display import settings_text, shown
from modelport.runtime.registry import reference_key

from .report_md import _save, md_code, md_text


def _load(store: ArtifactStore, pattern: str) -> list[dict[str, Any]]:
    items = [json.loads(p.read_text()) for p in sorted(store.path("depth").glob(pattern))]
    return sorted(items, key=lambda d: (rank(d.get("key", "")), d.get("key", "")))


def under_load(d: dict[str, Any]) -> str:
    """The flag a timing taken under load carries, as the bench rows show it ("" when it was quiet)."""
    return f" **UNDER LOAD ({d['name']}): {d['under_load']}; not trustworthy.**" if d.get("under_load") else ""


def _load_note(items: list[dict[str, Any]]) -> str:
    loads = [f"{d['name']} {d['load_avg']['before']}->{d['load_avg']['after']}" for d in items if d.get("load_avg")]
    note = "1-min load average (before->after): " + "; ".join(loads) + "." if loads else ""
    return note + "".join(under_load(d) for d in items)


def render(store: ArtifactStore) -> list[Path]:
    """Write report/sections/depth-*.md (+ PNGs) for whatever depth/*.json exist; remove stale ones."""
    out = store.path("report/sections")
    made = []
    for name, fn in (
        ("depth-1-labeled", labeled_md),
        ("depth-2-sweep", sweep_md),
        ("depth-3-tuning", tuning_md),
        ("depth-4-overhead", overhead_md),
        ("depth-5-peer", peer_md),
    ):
        text = fn(store, out)
        path = out / f"{name}.md"
        if text:
            write_atomic(path, text)
            made.append(path)
        else:
            path.unlink(missing_ok=True)
    return made


# -- labeled accuracy


def labeled_md(store: ArtifactStore, out: Path) -> str | None:
    items = _load(store, "labeled-*.json")
    if not items:
        return None
    ref = next((d for d in items if d["key"] == reference_key(store)), None)
    first = items[0]
    lines = [
        "## Accuracy on labeled images",
        "",
        f"{first['images']} labeled images (`{first['source']}`), {first['classes']}-class output "
        f"({first['label_convention']} label convention). Intervals: Wilson 95%. Drop: reference (the source model) minus "
        "backend, in points; discordant = images the reference gets right and the backend wrong / the reverse.",
        "",
        "| backend | top-1 | 95% CI | top-5 | 95% CI | top-1 drop | top-5 drop | top-1 discordant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in items:
        drop1 = drop5 = disc = "–"
        if ref is not None and ref["image_names"] == d["image_names"] and ref["truth"] == d["truth"]:
            drop1 = f"{100 * (ref['top1'] - d['top1']):+.1f}"
            drop5 = f"{100 * (ref['top5'] - d['top5']):+.1f}"
            worse = sum(r and not b for r, b in zip(ref["hit1"], d["hit1"], strict=True))
            better = sum(b and not r for r, b in zip(ref["hit1"], d["hit1"], strict=True))
            disc = f"{worse} / {better}"
        lo1, hi1 = d["top1_ci95"]
        lo5, hi5 = d["top5_ci95"]
        lines.append(
            f"| {d['name']} | {d['top1_correct']}/{d['images']} = {d['top1']:.1%} | {lo1:.1%}–{hi1:.1%} | "
            f"{d['top5_correct']}/{d['images']} = {d['top5']:.1%} | {lo5:.1%}–{hi5:.1%} | {drop1} | {drop5} | {disc} |"
        )
    lines += [
        "",
        "Ground truth used: "
        + ", ".join(f"`{n}` = {lab}" for n, lab in zip(first["image_names"], first["labels"], strict=True))
        + ".",
    ]
    return "\n".join(lines) + "\n"


# -- sweeps


def sweep_md(store: ArtifactStore, out: Path) -> str | None:
    items = _load(store, "sweep-*.json")
    if not items:
        return None
    lines = [
        "## Batch and thread sweeps",
        "",
        "Per call: median ms for the whole batch; throughput = batch x 1000 / median. `native` = the batch is one "
        "call on a model with a batch dim (`convert onnx-dynamic` / `tflite-dynamic`); `loop` = no batch dim (ncnn) and "
        "the batch runs as N sequential calls.",
        "",
    ]
    for d in items:
        threads = sorted({p["threads"] for p in d["points"]})
        batches = sorted({p["batch"] for p in d["points"]})
        at = {(p["threads"], p["batch"]): p for p in d["points"]}
        lines += [
            f"### {d['name']} ({d['batch_support']} batch; `{d['artifact']}`; threads via `{d['thread_setting']}`)",
            "",
            "| batch | " + " | ".join(f"{t} thr ms/call | {t} thr img/s" for t in threads) + " | load avg |",
            "|---|" + "---|---|" * len(threads) + "---|",
        ]
        for b in batches:
            cells = []
            for t in threads:
                p = at.get((t, b))
                cells += [f"{p['latency_ms']['median']:.2f}", f"{p['images_per_s']:.0f}"] if p else ["–", "–"]
            load = at.get((threads[-1], b), {}).get("load_avg")
            lines.append(f"| {b} | " + " | ".join(cells) + f" | {'–' if load is None else load} |")
        lines += ["", f"load avg {d['load_avg']['before']} -> {d['load_avg']['after']}; {d['seconds']} s.{under_load(d)}", ""]
    lines.append("![throughput vs batch](sweep.png)")
    _sweep_chart(items, out.parent / "sweep.png")  # beside results.md, which the section is appended to
    return "\n".join(lines) + "\n"


def _sweep_chart(items: list[dict[str, Any]], path: Path) -> None:
    """Images/s over batch sizes: a colour per backend, a line style per thread count, the legend beside the
    plot (over it, it hid lines; matplotlib's default cycle repeats its colours after ten lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(items) <= 10 else "tab20")
    colours = [cmap(i) for i in range(cmap.N)]
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for i, d in enumerate(items):
        counts = sorted({p["threads"] for p in d["points"]}, reverse=True)  # the most threads: solid
        for t in counts:
            pts = sorted((p for p in d["points"] if p["threads"] == t), key=lambda p: p["batch"])
            ax.plot(
                [p["batch"] for p in pts],
                [p["images_per_s"] for p in pts],
                marker="o",
                markersize=4,
                color=colours[i % len(colours)],
                ls=styles[counts.index(t) % len(styles)],
                label=f"{d['name']}, {t} thr ({d['batch_support']})",
            )
    ax.set_xscale("log", base=2)
    batches = sorted({p["batch"] for d in items for p in d["points"]})
    ax.set_xticks(batches, [str(b) for b in batches])  # the batch sizes themselves, not powers of two
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Throughput vs batch size and threads (colour: backend, line style: threads)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, path, plt)


def tuning_md(store: ArtifactStore, out: Path) -> str | None:
    path = store.path("depth/tuning.json")
    if not path.is_file():
        return None
    entries = sorted(json.loads(path.read_text())["backends"].values(), key=lambda e: rank(e["key"]))
    if not entries:
        return None
    lines = [
        "## Tuned vs default settings",
        "",
        f"Default = the configured settings (modelport.toml). Tuned = {entries[0]['method']}; knobs that change "
        "numerics are kept only above the accuracy floor. Both timed head to head, interleaved, batch 1. "
        "`nox -s bench -- --settings tuned` runs the winners (stored in `depth/tuning.json`).",
        "",
        "| backend | default median / p90 ms | tuned median / p90 ms | speed-up | tuned changes | cosine min (tuned) |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        d, t = e["default_ms"], e["tuned_ms"]
        changed = settings_text(e["changed"], "`{}={}`") or "none (defaults are best)"
        cos = f"{e['agreement']['cosine_min']:.5f}" if e.get("agreement") else "–"
        lines.append(
            f"| {e['name']} | {d['median']:.2f} / {d['p90']:.2f} | {t['median']:.2f} / {t['p90']:.2f} | "
            f"x{e['speedup']:.2f} | {changed} | {cos} |"
        )
    lines += ["", "Search space (first value = where the search starts if the config says so):", ""]
    for e in entries:
        space = "; ".join(f"`{k}` {shown(v)}" for k, v in e["space"].items())
        rejected = [k for k, v in e.get("numeric_checks", {}).items() if not v["passes_floor"]]
        extra = f" Rejected by the accuracy floor: {', '.join(rejected)}." if rejected else ""
        lines.append(
            f"- {e['name']}: {space}; {len(e['trials'])} timed candidates in {e['seconds']} s; "
            f"load {e['load_avg']['before']}->{e['load_avg']['after']}.{extra}{under_load(e)}"
        )
    return "\n".join(lines) + "\n"


# -- harness overhead


def overhead_md(store: ArtifactStore, out: Path) -> str | None:
    items = _load(store, "overhead-*.json")
    if not items:
        return None
    lines = [
        "## Harness overhead",
        "",
        "Benchmark per-inference time (what `bench` times: a clock pair around `Runtime.infer`) vs a bare loop of the "
        "toolchain's own call on the same input, in alternating rounds; ratio = median over rounds of the paired "
        "per-round ratio of means (goal <= 1.03).",
        "",
        "| backend | harness ms | bare ms | ratio | per-round min / max | ratio of overall means | goal | harness cost per call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in items:
        r = d["ratio_rounds"]
        lines.append(
            f"| {d['name']} | {d['harness_mean_ms']:.3f} | {d['bare_mean_ms']:.3f} | {d['ratio']:.3f} | "
            f"{r['min']:.3f} / {r['max']:.3f} | {d.get('ratio_of_means', d['ratio']):.3f} | "
            f"{'met' if d['meets_goal'] else 'NOT met'} | {_cost(d)} |"
        )
    lines += [
        "",
        f"{items[0]['rounds']} rounds x {items[0]['runs_per_round']} runs per side. " + _load_note(items),
        "",
        "Harness cost per call: the same harness around a runtime whose inference returns at once, minus a bare "
        "loop of an instant call (no threads, so background load barely moves it): the ratio's true floor is "
        "1 + cost / inference time; per-round ratios far from that are background load.",
    ]
    return "\n".join(lines) + "\n"


def peer_md(store: ArtifactStore, out: Path) -> str | None:
    items = _load(store, "peer-*.json")
    if not items:
        return None
    lines = [
        "## Throughput vs the toolchain's own benchmark tool",
        "",
        "Our throughput (the toolchain's throughput settings, its optimal number of requests) and the toolchain's "
        "benchmark tool on the same model files, one after the other in alternating order each round; ratio = "
        "median over rounds of ours / the tool's FPS (goal: within 5%).",
        "",
        "| backend | ours FPS | tool FPS | ratio | per-round min / max | goal | tool |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in items:
        r = d["ratio_rounds"]
        lines.append(
            f"| {md_text(d['name'])} | {d['ours_fps']:.1f} | {d['tool_fps']:.1f} | {d['ratio']:.3f} | "
            f"{r['min']:.3f} / {r['max']:.3f} | {'met' if d['meets_goal'] else 'NOT met'} | {md_code(d['tool'])} |"
        )
    lines += ["", f"{items[0]['rounds']} rounds x {items[0]['seconds']:g} s per side. " + _load_note(items)]
    return "\n".join(lines) + "\n"


def _cost(d: dict[str, Any]) -> str:
    us = d.get("harness_cost_us")
    return "–" if us is None else f"{us:.2f} µs = {100 * us / 1e3 / d['bare_mean_ms']:.3f}% of an inference"


# -- pipeline wall time (the report footer)


def pipeline_time(store: ArtifactStore) -> list[str]:
    """Per step: seconds from each artifact's manifest (the run that made it, i.e. cold), and the span
    over which results/*.json were written. A cached step makes no manifest, so it has no number here."""
    rows, seen = [], set()
    for m in sorted(store.root.rglob("*.manifest.json")):
        try:
            data = json.loads(m.read_text())
        except json.JSONDecodeError:
            continue
        group = tuple(sorted([data.get("artifact", m.name), *data.get("siblings", [])]))
        if "seconds" not in data or group in seen:  # a step with several outputs counts once
            continue
        seen.add(group)
        rows.append((data["created_utc"], ", ".join(group), data["tool"]["name"], data["seconds"]))
    lines = []
    if rows:
        total = sum(r[3] for r in rows)
        lines += ["## Pipeline wall time", "", "| step output | tool | seconds (when made) | made (UTC) |", "|---|---|---|---|"]
        lines += [f"| `{a}` | {t} | {s:.1f} | {c} |" for c, a, t, s in sorted(rows)]
        lines += [
            "",
            f"Conversions: {total:.1f} s in all when each was made (cold). A cached rerun skips them "
            "after hashing inputs (not timed here).",
        ]
    stamps = []
    for p in store.path("results").glob("*.json"):
        try:
            stamps.append(datetime.fromisoformat(json.loads(p.read_text())["created_utc"]))
        except (KeyError, ValueError, json.JSONDecodeError):
            continue
    if len(stamps) > 1:
        span = (max(stamps) - min(stamps)).total_seconds()
        lines.append(
            f"Benchmarks: {len(stamps)} result files written over {span:.0f} s "
            f"({min(stamps).isoformat()} -> {max(stamps).isoformat()}; includes other steps run in between)."
        )
    return lines
