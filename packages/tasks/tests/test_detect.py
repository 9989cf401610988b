"""Detection building blocks on synthetic boxes: NMS, letterbox and its way back, decoders, agreement, [detect]."""

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from numpy.typing import ArrayLike

from modelport.common.config import DetectConfig, load_config
from modelport.common.errors import ConfigError
from modelport.common.preprocess import InputSpec
from modelport.tasks.detect import Detections, batched_nms, box_agreement, decode, iou, nms, prepare
from modelport.tasks.detect.decode import expected_rows, ssd, ssd_priors


def dets(boxes: ArrayLike, scores: ArrayLike, classes: ArrayLike) -> Detections:
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(classes, np.int64))


def test_iou_of_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_nms_keeps_the_best_of_overlapping_boxes_and_every_separate_one() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # A looser threshold keeps the overlapping pair (IoU 0.68) too.
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]


def test_nms_result_does_not_depend_on_the_input_order() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (200, 2))], axis=1)
    scores = rng.permutation(200) / 200.0  # distinct scores: no ties
    kept = {tuple(boxes[i]) for i in nms(boxes, scores, 0.45)}
    perm = rng.permutation(200)
    assert {tuple(boxes[perm][i]) for i in nms(boxes[perm], scores[perm], 0.45)} == kept
    # No two kept boxes overlap by more than the threshold, and every dropped box overlaps a kept better one.
    k = np.array(sorted(kept))
    overlap = iou(k, k)
    np.fill_diagonal(overlap, 0)
    assert overlap.max() <= 0.45


def test_per_class_nms_never_suppresses_another_class_and_class_agnostic_does() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 1, 0])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, classes, 0.5, class_agnostic=True).tolist() == [0]


@pytest.mark.parametrize("align", ["top-left", "center"])
@pytest.mark.parametrize("photo", [(300, 600), (600, 300), (416, 416)])
def test_letterbox_places_the_photo_and_maps_boxes_back(photo: tuple[int, int], align: Literal["top-left", "center"]) -> None:
    h, w = photo
    image = np.full((h, w, 3), (10, 20, 30), np.uint8)
    spec = InputSpec(size=(416, 416), color="BGR", mean=(0, 0, 0), std=(1, 1, 1))
    out, placement = prepare(image, spec, DetectConfig(align=align, pad_value=114))
    assert out.shape == (416, 416, 3)
    x0, y0 = int(placement.pad_x), int(placement.pad_y)
    nw, nh = round(w * placement.scale_x), round(h * placement.scale_y)
    assert max(nw, nh) == 416 and placement.scale_x == pytest.approx(placement.scale_y, rel=0.01)
    assert out[y0 : y0 + nh, x0 : x0 + nw].reshape(-1, 3).tolist() == [[30, 20, 10]] * (nw * nh)  # BGR
    padded = np.ones((416, 416), bool)
    padded[y0 : y0 + nh, x0 : x0 + nw] = False
    assert (out[padded] == 114).all()
    if align == "center":
        assert abs((416 - nw) - 2 * x0) <= 1 and abs((416 - nh) - 2 * y0) <= 1
    else:
        assert (x0, y0) == (0, 0)
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.5, w * 0.5, h * 0.75]])
    assert placement.to_original(placement.to_input(boxes)) == pytest.approx(boxes, abs=1e-3)
    assert placement.to_input(boxes)[0] == pytest.approx([x0, y0, x0 + nw, y0 + nh], abs=1e-3)


def test_stretch_maps_boxes_back_per_axis() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    spec = InputSpec(size=(240, 320))
    out, placement = prepare(image, spec, DetectConfig(fit="stretch"))
    assert out.shape == (240, 320, 3)
    assert placement.to_original(np.array([[32, 24, 64, 48]])) == pytest.approx(np.array([[64, 48, 128, 96]]))
    # Clipped to the photo.
    assert placement.to_original(np.array([[-5, -5, 400, 300]])) == pytest.approx(np.array([[0, 0, 640, 480]]))


def test_a_detector_with_a_crop_is_refused() -> None:
    with pytest.raises(ConfigError, match="crop"):
        prepare(np.zeros((10, 10, 3), np.uint8), InputSpec(size=(8, 8), crop=0.5), DetectConfig())


def test_yolox_decode_puts_each_anchor_point_on_its_grid_cell() -> None:
    det = DetectConfig(strides=[8, 16, 32])
    size = (64, 96)  # 8x12 + 4x6 + 2x3 = 96 + 24 + 6 points
    n = expected_rows(det, size)
    assert n == 126
    head = np.zeros((1, n, 5 + 3), np.float32)
    head[0, :, 4] = 1.0
    # The second point of the 16-stride level: row 0, column 1 -> centre (1.5 * 16, 0.5 * 16), size 16.
    i = 96 + 1
    head[0, i, :4] = [0.5, 0.5, 0.0, np.log(2.0)]
    head[0, i, 5 + 2] = 0.9
    boxes, scores = decode({"output": head}, det, size)
    assert boxes[i] == pytest.approx([24 - 8, 8 - 16, 24 + 8, 8 + 16])
    assert scores[i] == pytest.approx([0, 0, 0.9])
    # Row-major, x fastest: the last point of the coarsest level is its bottom-right cell.
    assert boxes[-1] == pytest.approx([2 * 32 - 16, 1 * 32 - 16, 2 * 32 + 16, 1 * 32 + 16])
    with pytest.raises(ValueError, match="rows"):
        decode({"output": head[:, :-1]}, det, size)


def test_ssd_decode_of_zero_regressions_is_the_priors() -> None:
    size = (240, 320)
    min_sizes: list[list[float]] = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]
    priors = ssd_priors(size, [8, 16, 32, 64], min_sizes)
    assert len(priors) == 4420 == expected_rows(DetectConfig(decoder="ssd", strides=[8, 16, 32, 64], min_sizes=min_sizes), size)
    boxes = ssd(np.zeros((4420, 4)), priors, (0.1, 0.2))
    assert boxes[:, :2] + boxes[:, 2:] == pytest.approx(2 * priors[:, :2])
    assert boxes[:, 2:] - boxes[:, :2] == pytest.approx(priors[:, 2:])
    assert priors[0] == pytest.approx([0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240])


def test_box_agreement_is_perfect_for_identical_boxes_and_lower_for_perturbed_ones() -> None:
    rng = np.random.default_rng(1)
    photos = []
    for _ in range(5):
        # One box per 100-pixel cell of a 5x4 grid: no two boxes of a photo overlap.
        xy = np.stack(np.meshgrid(np.arange(5), np.arange(4)), -1).reshape(-1, 2) * 100 + rng.uniform(0, 10, (20, 2))
        photos.append(
            dets(np.concatenate([xy, xy + rng.uniform(20, 80, (20, 2))], 1), rng.uniform(0.4, 1, 20), rng.integers(0, 5, 20))
        )
    same = box_agreement(photos, photos, score_min=0.3, iou_min=0.5)
    assert (same.precision, same.recall, same.f1, same.mean_iou, same.score_drift_max) == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert same.matched == same.source_boxes == 100
    shifted = [dets(d.boxes + 4, d.scores - 0.05, d.classes) for d in photos]
    moved = box_agreement(shifted, photos, 0.3, 0.5)
    assert moved.f1 == 1.0 and moved.mean_iou < 0.9  # still the same objects, less tightly
    assert moved.score_drift_mean == pytest.approx(0.05, abs=1e-6)
    far = box_agreement([dets(d.boxes + 40, d.scores, d.classes) for d in photos], photos, 0.3, 0.5)
    assert far.f1 < 0.5
    relabelled = [dets(d.boxes, d.scores, (d.classes + 1) % 5) for d in photos]
    assert box_agreement(relabelled, photos, 0.3, 0.5).f1 == 0.0
    fewer = [d.take(np.arange(10)) for d in photos]
    half = box_agreement(fewer, photos, 0.3, 0.5)
    assert (half.precision, half.recall) == (1.0, 0.5)


def test_box_agreement_with_nothing_found_on_either_side() -> None:
    empty = [Detections.empty()] * 3
    assert box_agreement(empty, empty, 0.3, 0.5).f1 == 1.0
    one = [dets([[0, 0, 10, 10]], [0.9], [0])] + [Detections.empty()] * 2
    missed = box_agreement(empty, one, 0.3, 0.5)
    assert (missed.precision, missed.recall, missed.f1) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("nms_iou = 1.5", "detect.nms_iou: must be <= 1"),
        ("score_threshold = nan", "detect.score_threshold: must be a finite number"),
        ("strides = [8, 0]", "detect.strides[1]: must be >= 1"),
        ("max_boxes = 0", "detect.max_boxes: must be >= 1"),
        ('decoder = "yolo"', "detect.decoder"),
        ('decoder = "ssd"\nstrides = [8, 16]\nmin_sizes = [[10]]', "one min_sizes list per stride"),
        ("variances = [0.1, inf]", "detect.variances[1]: must be a finite number"),
        ("pad_value = 256", "detect.pad_value: must be <= 255"),
    ],
)
def test_a_bad_detect_value_is_one_config_error_naming_its_key(tmp_path: Path, line: str, error: str) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f"[detect]\n{line}\n")
    with pytest.raises(ConfigError, match=None) as e:
        load_config(config)
    assert error in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["{", '{"images": []}', '{"images": [{"id": 1}], "categories": [], "annotations": []}'])
def test_an_annotation_file_that_is_not_coco_is_one_input_error(tmp_path: Path, text: str) -> None:
    from modelport.common.errors import InputError
    from modelport.tasks.detect.coco import CocoSet

    bad = tmp_path / "instances.json"
    bad.write_text(text)
    with pytest.raises(InputError, match="not a COCO instances file") as e:
        CocoSet(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_nms_with_a_limit_keeps_exactly_the_first_boxes_it_keeps_without_one() -> None:
    """An SSD head above a low threshold leaves thousands of candidates: stopping at max_boxes must change
    nothing but the time (per class too, where one pass runs over the shifted classes)."""
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 300, (3000, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 60, (3000, 2))], axis=1)
    scores = rng.uniform(0.01, 1.0, 3000)
    classes = rng.integers(0, 3, 3000)
    for agnostic in (False, True):
        full = batched_nms(boxes, scores, classes, 0.45, agnostic)
        assert len(full) > 100
        np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.45, agnostic, limit=100), full[:100])
