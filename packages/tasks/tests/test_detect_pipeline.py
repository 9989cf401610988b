"""A detector through the pipeline: reference, conversion gated by boxes, bench rows with boxes and mAP.

Fast tier: a tiny YOLOX-like detector built at test time (tiny_models.tiny_detector) through real
onnxruntime. Slow tier: YOLOX-nano on the 13 COCO photos of data/detection.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import LIGHT_BENCH, ROOT, cli, error_line, make_context
from modelport.common.agreement import detect_failures
from modelport.common.config import AccuracyConfig
from modelport.common.errors import AccuracyGateError, InputError
from modelport.common.reference import DETECT_REFERENCE, load_detect_reference
from modelport.common.schema import BackendResult, DetectAgreement
from modelport.runtime.registry import runtime_class
from modelport.runtime.run import placements, prepared_images
from modelport.runtime.verify import check_detections
from modelport.tasks.detect.judge import reference_detections, reference_outputs


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def detector(tmp_path: Path) -> dict[str, str]:
    """The tiny detector fetched and its reference made, with COCO annotations written from the source's own
    confident boxes (so the source's mAP is high and a row that moves its boxes loses some)."""
    from tiny_models import tiny_detector_pipeline

    env = tiny_detector_pipeline(tmp_path)
    ok(cli(env, "fetch"))
    ok(cli(env, "convert", "reference"))
    ctx = make_context(env)
    arrays = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    truth = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate("abc")]}
    for i, (path, found) in enumerate(zip(ctx.eval_images, reference_detections(arrays, len(ctx.eval_images)), strict=True)):
        truth["images"].append({"id": i + 1, "file_name": path.name, "height": 24, "width": 40})
        for box, cls in zip(found.above(0.9).boxes.tolist(), found.above(0.9).classes.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            truth["annotations"].append(
                {"id": len(truth["annotations"]) + 1, "image_id": i + 1, "category_id": cls + 1, "bbox": [box[0], box[1], w, h],
                 "area": w * h, "iscrowd": 0}
            )  # fmt: skip
    assert truth["annotations"], "the tiny detector found nothing confident: the test would prove nothing"
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(truth))
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text().replace("[detect]\n", f'[detect]\nannotations = "{annotations.name}"\n'))
    return env


def test_the_reference_holds_every_output_and_the_sources_boxes(detector: dict[str, str]) -> None:
    ctx = make_context(detector)
    arrays = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    assert arrays["output/output"].shape == (4, 1, 21, 8)  # 4 photos, [1, 16 + 4 + 1 cells, 5 + 3]
    manifest = ctx.store.read_manifest(DETECT_REFERENCE)
    assert manifest is not None and manifest["extra"]["preprocessing"].endswith("letterbox/pad114/top-left")
    # the stored boxes are the stored outputs decoded: what every row is compared with
    with runtime_class("onnx-source").from_store(ctx.store, ctx.config) as rt:
        first = rt.infer_all(np.ascontiguousarray(prepared_images(ctx)[0].transpose(2, 0, 1)[None], np.float32))
    np.testing.assert_array_equal(first["output"], reference_outputs(arrays)[0]["output"])
    assert len(arrays["boxes"]) == len(arrays["scores"]) == len(arrays["photo"]) > 0


def test_a_letterbox_change_makes_the_reference_stale(detector: dict[str, str]) -> None:
    ctx = make_context(detector, overrides=["detect.pad_value=0"])
    with pytest.raises(InputError, match="other preprocessing"):
        load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)


def test_photos_are_letterboxed_with_the_pad_value(detector: dict[str, str]) -> None:
    ctx = make_context(detector)
    arr, place = prepared_images(ctx)[0], placements(ctx)[0]
    assert arr.shape == (32, 32, 3)  # the 40x24 photo scaled by 0.8 to 32x19, top-left, grey below
    assert (place.scale_x, place.pad_x, place.pad_y) == (0.8, 0.0, 0.0)
    assert (arr[20:] == 114).all() and not (arr[:19] == 114).all()


def test_infer_all_is_every_output_by_name_and_infer_the_first(detector: dict[str, str]) -> None:
    ctx = make_context(detector)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    with runtime_class("onnx-source").from_store(ctx.store, ctx.config) as rt:
        outs = rt.infer_all(x)
        assert list(outs) == ["output"]
        np.testing.assert_array_equal(outs["output"], rt.infer(x))


def test_a_converted_detector_is_verified_by_its_boxes_and_benched_with_them(detector: dict[str, str]) -> None:
    ok(cli(detector, "convert", "onnx"))
    art = Path(detector["MODELPORT_ARTIFACTS"])
    made = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    verified = made["extra"]["converters"]["source"]["agreement"]["detect"]  # verified by its boxes
    assert verified["f1"] == 1.0 and verified["map"] == verified["source_map"], verified
    ok(cli(detector, "bench", "onnx-source", "onnx"))
    for key in ("onnx-source", "onnx"):
        row = BackendResult.model_validate_json((art / "results" / f"{key}.json").read_text())
        det = row.agreement.detect if row.agreement else None
        assert det is not None, row.agreement_note
        assert det.f1 == 1.0 and det.matched == det.source_boxes > 0
        assert det.map is not None and det.source_map is not None  # the annotations are its own boxes:
        assert det.map == det.source_map > 0.5
        assert row.postprocess_ms is not None and row.latency_ms is not None
        # the whole frame: letterbox, every output, decode + NMS onto the photo
        assert row.frame_ms is not None and row.frame_ms.preprocess > 0 and row.frame_ms.postprocess > 0
        assert [t.image for t in row.topk] == ["img0.png", "img1.png", "img2.png", "img3.png"]
        assert all(t.labels[0] in "abc" for t in row.topk)
        assert np.load(art / "results" / f"{key}.npy").shape == (4, 21 * 8)


def test_the_gate_fails_a_detector_whose_boxes_moved(detector: dict[str, str]) -> None:
    ctx = make_context(detector)
    arrays = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    outputs = reference_outputs(arrays)
    what = ctx.store.path("onnx/model.onnx")
    same = check_detections(ctx, outputs, "float", what, "same outputs")
    assert same.detect is not None and same.detect.f1 == 1.0
    moved = [{"output": o["output"].copy()} for o in outputs]
    for o in moved:
        o["output"][..., 0:2] = 1.0 - o["output"][..., 0:2]  # every centre moves within its cell
        o["output"][..., 2:4] -= 0.7  # and every box halves
    with pytest.raises(AccuracyGateError, match="F1 vs source") as e:
        check_detections(ctx, moved, "float", what, "moved boxes")
    assert e.value.agreement is not None and e.value.agreement.detect is not None
    moved_det = e.value.agreement.detect
    assert moved_det.map is not None and moved_det.source_map is not None and moved_det.map < moved_det.source_map


def test_the_detect_floors() -> None:
    acc = AccuracyConfig()

    def agreement(f1: float, map_: float | None, source_map: float | None = 0.30) -> DetectAgreement:
        return DetectAgreement(
            source_boxes=0,
            row_boxes=0,
            matched=0,
            precision=0,
            recall=0,
            mean_iou=0,
            score_drift_mean=0.0,
            score_drift_max=0.0,
            f1=f1,
            map=map_,
            source_map=source_map,
        )

    assert detect_failures(agreement(0.99, 0.296), "float", acc) == []
    assert detect_failures(agreement(0.985, 0.30), "float", acc) == ["F1 vs source 0.9850 < 0.99"]
    assert "mAP 0.2940" in detect_failures(agreement(1.0, 0.294), "float", acc)[0]  # more than 0.005 below
    assert detect_failures(agreement(0.90, 0.285), "int8", acc) == []  # 95% of 0.30
    assert "95% of source" in detect_failures(agreement(0.95, 0.284), "int8", acc)[0]
    assert detect_failures(agreement(0.95, None, None), "int8", acc) == []  # no annotations: F1 alone


@pytest.mark.slow
def test_yolox_nano_rows_onnx_fp32_holds_the_fp_floors_and_int8_has_its_numbers(tmp_path: Path) -> None:
    env = {"MODELPORT_CONFIG": str(ROOT / "yolox_nano.toml"), "MODELPORT_ARTIFACTS": str(tmp_path)}
    ok(cli(env, "fetch"))
    ok(cli(env, "convert", "reference", "onnx"))
    cli(env, "convert", "onnx-int8")  # below its floors with the defaults (TOOLCHAINS.md): a failed row is correct
    cli(env, *LIGHT_BENCH, "bench", "onnx", "onnx-int8")
    fp32 = BackendResult.model_validate_json((tmp_path / "results" / "onnx.json").read_text())
    assert fp32.status == "ok" and fp32.agreement is not None and fp32.agreement.detect is not None
    det = fp32.agreement.detect
    assert det.f1 >= 0.99 and det.source_map is not None and det.map is not None
    assert det.map >= det.source_map - 0.005 and det.source_map > 0.1  # YOLOX-nano finds COCO objects
    assert det.class_ap is not None and det.class_ap[0].name == "person" and det.class_ap[0].instances == 30
    assert np.mean([c.ap for c in det.class_ap]) == pytest.approx(det.map, abs=1e-9)
    assert det.photo is not None and (det.photo.image, det.photo.width, det.photo.height) == ("000000397133.jpg", 640, 427)
    assert "person" in {b.label for b in det.photo.boxes} and len(det.photo.boxes) == len(det.photo.source)
    int8 = BackendResult.model_validate_json((tmp_path / "results" / "onnx-int8.json").read_text())
    assert int8.agreement is not None and int8.agreement.detect is not None  # measured, whether or not it passed
    assert int8.status == "ok" or "floors" in (int8.reason or "")
    cli(env, "report")  # non-zero when the INT8 row failed its floors; the report is written all the same
    assert "COCO AP@[.5:.95] per class" in (tmp_path / "report" / "results.md").read_text()
    assert (tmp_path / "report" / "boxes.png").is_file()


def test_a_report_over_a_classifier_and_a_detector_keeps_each_models_rows_apart(detector: dict[str, str], tmp_path: Path) -> None:
    from tiny_models import tiny_pipeline

    (tmp_path / "cls").mkdir()
    classifier = tiny_pipeline(tmp_path / "cls")
    ok(cli(classifier, "fetch"))
    ok(cli(classifier, "convert", "reference", "onnx"))
    ok(cli(detector, "convert", "onnx"))
    bundles = []
    for env in (classifier, detector):
        ok(cli(env, "-o", "bench.throughput=false", "-o", "bench.cold_start=false", "bench", "onnx-source", "onnx"))
        bundles += ["--merge", str(tmp_path / f"{Path(env['MODELPORT_CONFIG']).stem}.tar.gz")]
        ok(cli(env, "bundle", "export", "--out", bundles[-1]))
    merged = {**classifier, "MODELPORT_ARTIFACTS": str(tmp_path / "merged")}
    ok(cli(merged, "report", *bundles))
    report = tmp_path / "merged" / "report"
    md = (report / "results.md").read_text()
    assert "Detectors: FP32/FP16 boxes F1 vs source >= 0.99" in md
    first = md[md.index("\n| # |") :].split("\n\n")[0]  # the results table, not the matrix below it
    lines = [line for line in first.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert {"model", "boxes F1 vs source", "mAP / AP50", "postprocess ms"} <= set(head)
    table = [dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[1:]]
    models = [r["model"].split("@")[0] for r in table]
    assert sorted(models) == ["tiny", "tiny", "tiny_det", "tiny_det"] and models[0] == models[1]  # each model's rows together
    for r in table:
        if r["model"].startswith("tiny_det@"):
            assert r["boxes F1 vs source"] == "1.000" and "(source " in r["mAP / AP50"] and r["top-1 agreement"] == "–"
        else:
            assert r["boxes F1 vs source"] == "–" and r["top-1 agreement"] == "100% of 4"
    rows = {(r["model"].split("@")[0], r["key"]): r for r in json.loads((report / "results.json").read_text())["results"]}
    assert rows[("tiny_det", "onnx")]["postprocess_ms"]["median"] > 0
    assert rows[("tiny", "onnx")]["postprocess_ms"] is None
    csv = (report / "results.csv").read_text().splitlines()
    f1 = csv[0].split(",").index("f1_vs_source")
    assert sorted(line.split(",")[f1] for line in csv[1:]) == ["", "", "1.0", "1.0"]
    # the detector's photos are not the classifier config's: its boxes on a blank canvas, unless --photos names them
    assert canvas_share(report / "boxes.png") > 0.2
    photos = str(Path(detector["MODELPORT_CONFIG"]).parent / "images")
    ok(cli(merged, "report", *bundles, "--photos", photos))
    assert canvas_share(report / "boxes.png") < 0.05
    assert "nowhere: no such image, directory" in error_line(
        cli(merged, "report", *bundles, "--photos", str(tmp_path / "nowhere"))
    )
    assert canvas_share(report / "boxes.png") < 0.05  # the refused run wrote nothing


def canvas_share(png: Path) -> float:
    """The share of a boxes.png in the blank canvas's grey (a photo that was not found)."""
    from PIL import Image

    with Image.open(png) as im:
        return float((np.asarray(im.convert("RGB")) == (238, 238, 238)).all(axis=2).mean())


def test_the_main_jobs_detector_steps_run_the_default_detector_in_each_rows_own_env() -> None:
    from modelport.common import envs
    from modelport.common.backends import backends
    from modelport.common.config import load_config

    config = load_config(ROOT / envs.DETECTOR)
    assert config.detector is not None and config.detect.annotations is not None and config.detect.annotations.is_file()
    table, catalogue = envs.load(ROOT), backends()
    benched = {name: e.commands("detect_bench") for name, e in table.envs.items() if e.commands("detect_bench")}
    assert set(benched) == {"tf-onnx", "openvino"}
    # onnxruntime's INT8 misses the detector floors on YOLOX-nano: its row may fail, the others may not
    assert benched["tf-onnx"] == [["bench", "onnx-source", "onnx", "onnx-int8", "--may-fail", "onnx-int8"]]
    assert benched["openvino"] == [["bench", "openvino-fp32", "openvino-int8"]]
    for name, lines in benched.items():
        assert table.envs[name].commands("detect_convert"), name  # what it benches, it converts first
        keys = [a for a in lines[0][1:] if not a.startswith("-")][: len(table.envs[name].steps["detect_bench"])]
        assert all(catalogue[key].env == name for key in keys), lines


def test_a_detector_row_stores_its_headline_boxes_and_per_class_ap_and_the_report_draws_them(
    detector: dict[str, str], tmp_path: Path
) -> None:
    from PIL import Image

    from modelport.bench.report_md import charts

    ok(cli(detector, "convert", "onnx"))
    ok(cli(detector, "bench", "onnx-source", "onnx"))
    art, folder = Path(detector["MODELPORT_ARTIFACTS"]), Path(detector["MODELPORT_CONFIG"]).parent
    truth = json.loads((folder / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    counts: dict[str, int] = {}
    for a in truth["annotations"]:
        counts[names[a["category_id"]]] = counts.get(names[a["category_id"]], 0) + 1
    with Image.open(folder / "images" / "img0.png") as im:
        size = im.size
    photos = {}
    for key in ("onnx-source", "onnx"):
        row = BackendResult.model_validate_json((art / "results" / f"{key}.json").read_text())
        det = row.agreement.detect if row.agreement else None
        assert det is not None and det.photo is not None and det.class_ap is not None, row.agreement_note
        photo = det.photo
        assert photo.image == "img0.png" and (photo.width, photo.height) == size
        assert photo.boxes and photo.boxes == photo.source  # the same ONNX model: the same boxes
        for b in photo.boxes:
            assert b.label in ("a", "b", "c") and b.score >= 0.3
            assert 0 <= b.box[0] <= b.box[2] <= size[0] and 0 <= b.box[1] <= b.box[3] <= size[1]
        photos[key] = photo
        # every annotated category, with its instances; AP in [0, 1], and their mean is COCO's mAP
        assert {c.name: c.instances for c in det.class_ap} == counts
        assert all(0 <= c.ap <= 1 for c in det.class_ap) and det.map is not None
        assert np.mean([c.ap for c in det.class_ap]) == pytest.approx(det.map, abs=1e-9)
    ok(cli(detector, "report"))
    report = art / "report"
    with Image.open(report / "boxes.png") as im:
        assert im.format == "PNG"
        drawn_size = im.size
    # three panels side by side (the source's, then each row's) of 5.2 x 4 in at 110 dpi, less the trimmed margin
    assert 0.8 * 3 * 5.2 * 110 < drawn_size[0] <= 3 * 5.2 * 110 and drawn_size[1] <= 4.0 * 110
    md = (report / "results.md").read_text()
    assert "![boxes](boxes.png)" in md and "| class | instances | ONNX FP32 (source) | ONNX FP32 |" in md
    page = (report / "results.html").read_text()
    assert '<img alt="boxes" src="data:image/png;base64,' in page and "Detector boxes and per-class AP" in page
    # without the photo (a merged report): the same panels on a blank canvas of the photo's size
    data = json.loads((report / "results.json").read_text())
    assert charts(data, tmp_path, {"img0.png": folder / "images" / "img0.png"})["boxes"].is_file()
    with Image.open(tmp_path / "boxes.png") as im:
        with_photo = np.asarray(im.convert("RGB"))
    charts(data, tmp_path, {})
    with Image.open(tmp_path / "boxes.png") as im:
        blank = np.asarray(im.convert("RGB"))
    assert blank.shape == with_photo.shape
    canvas = (blank == (238, 238, 238)).all(axis=2).mean()
    assert canvas > 0.2 and (with_photo == (238, 238, 238)).all(axis=2).mean() < canvas / 4
