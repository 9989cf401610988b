"""The report's charts: drawn only with something to show, floors where they belong, readable axes."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from modelport.bench import report_md  # noqa: E402

FLOORS = {"fp_top1_min": 1.0, "fp_cosine_min": 0.999, "int8_top1_min": 0.9, "int8_cosine_min": 0.95, "int8_cosine_mean_min": 0.98}


def row(key: str, median: float | None = None, cos: tuple[float, float] | None = None, status: str = "ok") -> dict[str, Any]:
    return {
        "key": key,
        "name": key.upper(),
        "status": status,
        "reason": None if status == "ok" else "why",
        "latency_ms": {"median": median, "p90": median * 1.1} if median else None,
        "agreement": {"images": 12, "top1": 1.0, "cosine_min": cos[0], "cosine_mean": cos[1]} if cos else None,
        "latency_note": None,
        "latency_runs": 5 if median else None,
        "fps": None,
        "relative_speed": None,
        "size_bytes": None,
        "headline": None,
        "load_avg": {},
        "tool_versions": {},
        "settings": {},
        "extra_timings": {},
        "notes": [],
        "env": "t",
    }


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "machine": {"cpu": "x", "cores": 2, "memory_gb": 1, "os": "linux", "python": "3"},
        "reference": "tflite",
        "results": results,
        "floors": FLOORS,
        "verify": True,
        "notes": [],
    }


def test_no_empty_charts_when_nothing_was_measured(tmp_path: Path) -> None:
    r = report([row("tensorrt-fp16", status="skipped"), row("onnx", status="failed")])
    (tmp_path / "latency.png").write_bytes(b"old")  # a chart from an earlier report must not stay
    assert report_md.charts(r, tmp_path) == {}
    assert not (tmp_path / "latency.png").exists()
    md = report_md.markdown(r, [], drawn=[])
    assert "No latency chart: no backend was timed." in md and "No accuracy chart" in md and ".png" not in md


def test_each_int8_floor_is_drawn_beside_its_statistic() -> None:
    fig = report_md._accuracy(plt, [row("onnx-int8", cos=(0.96, 0.99)), row("ncnn-int8", cos=(0.97, 0.995))], FLOORS)
    lines = {ln.get_label(): ln.get_xdata()[0] for ln in fig.axes[0].lines}
    assert lines == {"INT8 floor, mean (0.98)": 0.98, "INT8 floor, min (0.95)": 0.95}
    plt.close(fig)


def test_one_slow_backend_gets_a_log_axis_and_labels_stay_inside() -> None:
    rows = [row("onnx-int8", 3.6), row("onnx", 6.6), row("tflite", 6.4), row("rknn-int8-board", 1188.0)]
    fig = report_md._latency(plt, sorted(rows, key=lambda e: e["latency_ms"]["median"]))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    assert all(b.x1 <= box.x1 and b.x0 >= box.x0 for b in labels)  # value labels are not cut off
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1 :])
    plt.close(fig)
    assert report_md._latency(plt, rows[:3]).axes[0].get_xscale() == "linear"


def test_a_setting_left_to_its_default_reads_default_never_none() -> None:
    r = row("openvino-fp32", median=5.0, cos=(1.0, 1.0))
    r["settings"] = {"device": "CPU", "openvino.threads": None, "openvino.num_streams": [None, 1]}
    md = report_md.markdown(report([r]), [], drawn=[])
    # brackets are escaped in Markdown (a link could hide in a setting), so they render as written
    assert r"device=CPU, openvino.threads=default, openvino.num_streams=\[default, 1\]" in md and "None" not in md


def test_a_report_of_several_models_names_each_and_claims_nothing_of_one_source() -> None:
    r = report([row("onnx", median=5.0, cos=(1.0, 1.0))])
    r["models"] = ["a@111111111111", "b@222222222222"]
    r["source"] = {"name": "a", "runtime": "onnxruntime", "outputs": "probabilities", "all_rows_int8_floors": True}
    text = report_md.method(r)
    assert "`a@111111111111`, `b@222222222222`" in text and "each row's own source model" in text
    assert "probabilities" not in text and "source is quantized" not in text and "(a, run in" not in text
    r["models"] = r["models"][:1]
    assert "the source model (a, run in onnxruntime); its outputs are probabilities" in report_md.method(r)
