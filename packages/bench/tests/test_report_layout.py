"""results.html at 1400 px in a real headless Chromium: the summary table fits the page, no chart label is
clipped, the value labels stand clear of the whiskers, and the agreement chart has a numbered axis and no
bars from an axis that does not start at 0. The page measures itself (a probe script added to a copy) and
writes what it found into the DOM, which --dump-dom returns."""

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sys.path.insert(0, str(ROOT / ".ci"))
import check_html  # noqa: E402 - the CI check's own Chromium invocation

PROBE = """<script>
(function () {
  const out = {};
  const wrap = document.querySelector("#summary .scroll"), table = document.getElementById("results");
  out.table_overflow = wrap.scrollWidth - wrap.clientWidth;
  out.table_right = table.getBoundingClientRect().right;
  out.page_width = document.documentElement.clientWidth;
  out.clipped = [];
  for (const svg of document.querySelectorAll(".chart svg")) {
    const w = Number(svg.getAttribute("width"));
    for (const t of svg.querySelectorAll("text")) {
      const b = t.getBBox();
      if (b.x < 0 || b.x + b.width > w + 0.5) out.clipped.push(t.textContent);
    }
  }
  const lat = document.querySelector("#latency-chart svg");
  const whiskers = [...lat.querySelectorAll("line")].filter((l) => l.getAttribute("y1") === l.getAttribute("y2")
    && l.getAttribute("stroke") === "#222").map((l) => Math.max(Number(l.getAttribute("x1")), Number(l.getAttribute("x2"))));
  out.whisker_end = Math.max(...whiskers);
  out.value_x = Math.min(...[...lat.querySelectorAll("text.value")].map((t) => t.getBBox().x));
  out.latency_ticks = [...lat.querySelectorAll("text.tick")].map((t) => t.textContent);
  const agr = document.querySelector("#agreement-chart svg");
  out.agreement_rects = agr.querySelectorAll("rect").length;
  out.agreement_ticks = [...agr.querySelectorAll("text.tick")].map((t) => t.textContent);
  document.body.setAttribute("data-layout", JSON.stringify(out));
})();
</script></body>"""


def row(
    key: str, name: str, median: float, p90: float, cos_min: float, cos_mean: float, precision: str = "fp32"
) -> dict[str, object]:
    return {
        "key": key,
        "name": name,
        "status": "ok",
        "precision": precision,
        "latency_ms": {"median": median, "p90": p90},
        "fps": 1000 / median,
        "best_fps": 2400 / median,
        "best_concurrency": 4,
        "frame_ms": {"total": median + 3.1, "decode": 2.0, "preprocess": 1.0, "infer": median, "postprocess": 0.1},
        "relative_speed": 3.6 / median,
        "size_bytes": 13_980_000,
        "agreement": {"top1": 1.0, "images": 12, "cosine_min": cos_min, "cosine_mean": cos_mean},
        "headline": {"label": "military uniform", "confidence": 0.906},
    }


def test_the_page_reads_at_1400_px(tmp_path: Path) -> None:
    from modelport.bench import report_html

    results: list[dict[str, object]] = [
        row("tflite", "TFLite FP32", 3.61, 3.97, 1.0, 1.0),
        row("onnx-int8", "ONNX INT8", 1.88, 2.06, 0.9684, 0.9943, "int8"),
        row("ncnn-int8", "NCNN INT8", 3.93, 7.74, 0.9779, 0.9966, "int8"),
        row("rknn-int8-hybrid", "RKNN INT8 hybrid (simulator) with a long display name", 5.14, 9.9, 0.9886, 0.9982),
    ]
    results.append({"key": "tensorrt-fp32", "name": "TensorRT FP32", "status": "skipped", "reason": "no NVIDIA driver: " * 6})
    report = {
        "results": results,
        "reference": "tflite",
        "floors": {"fp_cosine_min": 0.999, "int8_cosine_min": 0.95, "int8_cosine_mean_min": 0.98},
        "machine": {"cpu": "AMD EPYC", "cores": 2},
    }
    page = tmp_path / "results.html"
    page.write_text(report_html.render(report, tmp_path, [], "intro").replace("</body>", PROBE, 1))
    proc = check_html.run(page, "--window-size=1400,2400", "--dump-dom")
    found = re.search(r'data-layout="([^"]*)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    got = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert got["table_overflow"] <= 0 and got["table_right"] <= got["page_width"], got  # every column on the page
    assert got["clipped"] == [], got
    assert got["value_x"] > got["whisker_end"], got  # the values stand in their own column, clear of every whisker
    assert len(got["latency_ticks"]) >= 3
    assert got["agreement_rects"] == 0  # points, not bars that would start at 0.95
    numbers = [float(t) for t in got["agreement_ticks"] if re.fullmatch(r"[0-9.]+", t)]
    assert len(numbers) >= 3 and min(numbers) <= 0.9684 and max(numbers) == 1.0, got


BOXES_PROBE = """<script>
window.addEventListener("load", function () {
  const img = document.querySelector('img[alt="boxes"]');
  const heads = [...document.querySelectorAll("h2, h3")].map((h) => h.textContent);
  const table = [...document.querySelectorAll("table")].find((t) => t.textContent.includes("instances"));
  const out = {heading: heads.includes("Detector boxes and per-class AP"), page_width: document.documentElement.clientWidth};
  if (img) {
    const b = img.getBoundingClientRect();
    Object.assign(out, {natural: img.naturalWidth, width: b.width, height: b.height, right: b.right});
  }
  out.ap_rows = table ? [...table.querySelectorAll("tbody tr")].map((r) => r.textContent) : [];
  document.body.setAttribute("data-boxes", JSON.stringify(out));
});
</script></body>"""


def test_a_detector_rows_boxes_panel_renders_at_1400_px(tmp_path: Path) -> None:
    from modelport.bench import report_html
    from modelport.bench.report_md import charts

    def boxes(shift: float) -> list[dict[str, object]]:
        return [
            {"box": [40 + shift, 30, 300, 400], "cls": 0, "label": "person", "score": 0.83},
            {"box": [350, 200 + shift, 600, 380], "cls": 45, "label": "bowl", "score": 0.41},
        ]

    def detector(key: str, name: str, shift: float) -> dict[str, object]:
        e = row(key, name, 40.0, 50.0, 1.0, 1.0)
        e |= {"model": "yolox_nano", "postprocess_ms": {"median": 7.9, "p90": 8.5}}
        e["agreement"] = {"top1": 1.0, "images": 13, "cosine_min": 1.0, "cosine_mean": 1.0, "detect": {
            "f1": 1.0, "map": 0.25, "ap50": 0.37, "source_map": 0.25,
            "class_ap": [{"name": "person", "instances": 30, "ap": 0.589}, {"name": "bowl", "instances": 4, "ap": 0.366}],
            "photo": {"image": "000000397133.jpg", "width": 640, "height": 427, "boxes": boxes(shift), "source": boxes(0)},
        }}  # fmt: skip
        return e

    report = {
        "results": [detector("onnx-source", "ONNX FP32 (source)", 0), detector("onnx-int8", "ONNX INT8", 12)],
        "reference": "onnx-source",
        "models": ["yolox_nano"],
        "floors": {"fp_cosine_min": 0.999, "int8_cosine_min": 0.95, "int8_cosine_mean_min": 0.98},
        "machine": {"cpu": "AMD EPYC", "cores": 2},
    }
    assert "boxes" in charts(report, tmp_path, {})  # merged from elsewhere: no photo here, a blank canvas
    page = tmp_path / "results.html"
    page.write_text(report_html.render(report, tmp_path, [], "intro").replace("</body>", BOXES_PROBE, 1))
    proc = check_html.run(page, "--window-size=1400,2400", "--dump-dom")
    found = re.search(r'data-boxes="([^"]*)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    got = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert got["heading"] and got["natural"] > 0, got  # the PNG decoded
    assert 0 < got["width"] and got["right"] <= got["page_width"] and got["height"] > 0.15 * got["width"], got
    assert [r.split("0.")[0] for r in got["ap_rows"]] == ["person30", "bowl4"], got
