"""The decoders on the real shipped detectors through onnxruntime: YOLOX-nano on COCO photos, RFB-320 both ways."""

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from modelport.common.config import DetectConfig
from modelport.common.images import load_image
from modelport.common.preprocess import InputSpec
from modelport.tasks.detect import Detections, box_agreement, decode, iou, postprocess, preprocess

# YOLOX-nano's detections and each photo's (height, width), by file name.
YoloxBoxes = tuple[dict[str, Detections], dict[str, tuple[int, ...]]]
DATA = Path(__file__).resolve().parents[3] / "data" / "detection"
PHOTOS = sorted((DATA / "coco" / "images").glob("*.jpg"))
YOLOX_SPEC = InputSpec(size=(416, 416), color="BGR", mean=(0, 0, 0), std=(1, 1, 1))
RFB_SPEC = InputSpec(size=(240, 320), color="RGB", mean=(127, 127, 127), std=(128, 128, 128))
RFB_COMMON: dict[str, Any] = {
    "strides": [8, 16, 32, 64],
    "background": True,
    "fit": "stretch",
    "score_threshold": 0.7,
    "nms_iou": 0.3,
}
RFB_DECODED = DetectConfig(decoder="boxes_scores", boxes_output="boxes", scores_output="scores", **RFB_COMMON)
RFB_RAW = DetectConfig(decoder="ssd", min_sizes=[[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]], **RFB_COMMON)


def session(name: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the RFB files list their initializers as inputs: one warning each
    return ort.InferenceSession(str(DATA / name), options, providers=["CPUExecutionProvider"])


def run(sess: Any, tensor: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: tensor}), strict=True))


@pytest.fixture(scope="module")
def yolox() -> YoloxBoxes:
    """YOLOX-nano's boxes on the 13 COCO photos, by file name, and each photo's size."""
    sess = session("yolox_nano.onnx")
    found: dict[str, Detections] = {}
    sizes: dict[str, tuple[int, ...]] = {}
    for photo in PHOTOS:
        image = load_image(photo)
        tensor, placement = preprocess(image, YOLOX_SPEC, DetectConfig())
        found[photo.name] = postprocess(run(sess, tensor), DetectConfig(), YOLOX_SPEC.size, placement)
        sizes[photo.name] = image.shape[:2]
    return found, sizes


def truth(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = json.loads((DATA / "coco" / "instances.json").read_text())
    (image_id,) = [im["id"] for im in data["images"] if im["file_name"] == name]
    cats = sorted(c["id"] for c in data["categories"])
    anns = [a for a in data["annotations"] if a["image_id"] == image_id]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    return boxes, np.array([cats.index(a["category_id"]) for a in anns])


def test_yolox_nano_finds_the_annotated_objects_in_the_photos_coordinates(yolox: YoloxBoxes) -> None:
    found, sizes = yolox
    for name in ("000000041888.jpg", "000000397133.jpg", "000000331352.jpg"):
        det, (h, w) = found[name], sizes[name]
        assert 1 <= len(det) <= DetectConfig().max_boxes
        assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= w).all() and (det.boxes[:, [1, 3]] <= h).all()
        assert (np.diff(det.scores) <= 0).all()
        gt_boxes, _ = truth(name)
        confident = det.above(0.5)
        assert len(confident) >= 1
        # Nearly every confident box is on an annotated object (IoU >= 0.5): boxes are in the photo's pixels.
        # (Classes are mAP's business: YOLOX-nano calls 000000041888's birds sheep.)
        overlap = iou(confident.boxes, gt_boxes)
        assert (overlap.max(axis=1) >= 0.5).mean() >= 0.75, (name, overlap.max(axis=1))


def test_yolox_nano_coco_map_on_the_13_photos(yolox: YoloxBoxes) -> None:
    pytest.importorskip("pycocotools", reason="COCO mAP needs pycocotools (tf-onnx env requirements)")
    from modelport.tasks.detect.coco import CocoSet

    score = CocoSet(DATA / "coco" / "instances.json").evaluate(yolox[0])
    # 0.251 / 0.372 measured here (0.263 / 0.376 with OpenCV's resize); CPUs differ by far less than the margin.
    assert score.map > 0.2 and score.ap50 > 0.3, score
    assert (score.images, score.annotations) == (13, 93)


def test_yolox_nano_agrees_with_itself_and_less_with_a_perturbed_head(yolox: YoloxBoxes) -> None:
    sess = session("yolox_nano.onnx")
    rng = np.random.default_rng(0)
    same, noisy = [], []
    for photo in PHOTOS[:4]:
        tensor, placement = preprocess(load_image(photo), YOLOX_SPEC, DetectConfig())
        out = run(sess, tensor)
        same.append(postprocess(out, DetectConfig(), YOLOX_SPEC.size, placement))
        head = out["output"].copy()
        head[..., :4] += rng.normal(0, 0.3, head[..., :4].shape).astype(np.float32)
        noisy.append(postprocess({"output": head}, DetectConfig(), YOLOX_SPEC.size, placement))
    source = [yolox[0][p.name] for p in PHOTOS[:4]]
    exact = box_agreement(same, source, 0.3, 0.5)
    assert cast(tuple[object, ...], (exact.f1, exact.mean_iou, exact.score_drift_max)) == (
        1.0,
        pytest.approx(1.0),
        pytest.approx(0.0, abs=1e-6),
    )
    moved = box_agreement(noisy, source, 0.3, 0.5)
    assert moved.f1 < 1.0 and moved.mean_iou < 0.95


def test_rfb320_with_and_without_postprocessing_agree_after_the_ssd_decode() -> None:
    decoded, raw = session("ulfd_version-RFB-320.onnx"), session("ulfd_version-RFB-320_without_postprocessing.onnx")
    worst, faces_a, faces_b = 0.0, [], []
    for photo in [*PHOTOS[:6], DATA.parent / "images" / "grace_hopper.jpg", DATA.parent / "images" / "face.jpg"]:
        tensor, placement = preprocess(load_image(photo), RFB_SPEC, RFB_DECODED)
        a, b = run(decoded, tensor), run(raw, tensor)
        boxes_a, scores_a = decode(a, RFB_DECODED, RFB_SPEC.size)
        boxes_b, scores_b = decode(b, RFB_RAW, RFB_SPEC.size)
        assert scores_a.shape == (4420, 1) and np.array_equal(scores_a, scores_b)
        worst = max(worst, float(np.abs((boxes_a - boxes_b) / [320, 240, 320, 240]).max()))
        faces_a.append(postprocess(a, RFB_DECODED, RFB_SPEC.size, placement))
        faces_b.append(postprocess(b, RFB_RAW, RFB_SPEC.size, placement))
    assert worst < 1e-3  # in 0..1 of the input; 1.1e-7 measured
    assert sum(map(len, faces_a)) >= 2  # grace_hopper and face.jpg have faces
    agreement = box_agreement(faces_b, faces_a, 0.7, 0.5)
    assert agreement.f1 == 1.0 and agreement.mean_iou > 0.999


def test_decoding_a_two_output_model_needs_to_know_which_output_is_which() -> None:
    both = {"a": np.zeros((1, 10, 4)), "b": np.zeros((1, 10, 4))}
    with pytest.raises(ValueError, match="name it in \\[detect\\]"):
        decode(both, DetectConfig(decoder="boxes_scores"), (240, 320))
    assert isinstance(Detections.empty(), Detections)
