"""A detector's raw outputs -> scored boxes in input pixels, by the decoder [detect] names.

- ``yolox``: one ``[1, N, 5 + C]`` head, per anchor point ``[dx, dy, log w, log h, objectness, C class
  scores]`` (sigmoids applied), on the grids of ``strides`` (row-major, x fastest; the finest stride
  first): ``cx = (dx + gx) * s``, ``w = exp(log w) * s``, score = objectness x class score.
- ``ssd``: raw regressions ``[1, N, 4]`` and scores ``[1, N, C]``, with the priors of ``strides`` x
  ``min_sizes`` (one square prior per size on each cell centre) and centre/size ``variances``.
- ``boxes_scores``: boxes the model already decoded (corner or centre form, 0..1 or input pixels).

Every decoder ends in the same place, ``postprocess``: score threshold, NMS, ``max_boxes``, photo pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from modelport.common.config import DetectConfig

from .boxes import Detections
from .letterbox import Placement
from .nms import batched_nms

Size = tuple[int, int]  # height, width of the model's input


def _grids(size: Size, strides: Sequence[int]) -> list[tuple[int, int, int]]:
    """(rows, cols, stride) of each level: the input divided by the stride, rounded up."""
    h, w = size
    return [(math.ceil(h / s), math.ceil(w / s), s) for s in strides]


def expected_rows(det: DetectConfig, size: Size) -> int:
    """How many boxes (rows of N) the decoder's strides and priors give at this input size."""
    if det.decoder == "yolox":
        return sum(rows * cols for rows, cols, _ in _grids(size, det.strides))
    if det.decoder == "ssd":
        return sum(rows * cols * len(m) for (rows, cols, _), m in zip(_grids(size, det.strides), det.min_sizes, strict=True))
    raise ValueError(f"{det.decoder} boxes come decoded: their number is the model's")


def yolox(head: np.ndarray, size: Size, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """[N, 5 + C] raw head -> corner boxes [N, 4] in input pixels and scores [N, C]."""
    cells = []
    for rows, cols, s in _grids(size, strides):
        gy, gx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells.append(np.stack([gx.ravel(), gy.ravel(), np.full(rows * cols, s)], axis=1))
    grid = np.concatenate(cells).astype(np.float64)
    head = np.asarray(head, np.float64)
    centre = (head[:, :2] + grid[:, :2]) * grid[:, 2:]
    half = np.exp(head[:, 2:4]) * grid[:, 2:] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    return boxes, head[:, 4:5] * head[:, 5:]


def ssd_priors(size: Size, strides: Sequence[int], min_sizes: Sequence[Sequence[float]]) -> np.ndarray:
    """[P, 4] priors (cx, cy, w, h) in 0..1 of the input, clamped to it: per level, row-major, sizes innermost.

    Centres divide the level's own grid evenly, (i + 0.5) / cols: where the input is not a multiple of the
    stride (240 / 32) that is what SSD models embed, not (i + 0.5) * stride / width.
    """
    h, w = size
    out = []
    for (rows, cols, _), sizes in zip(_grids(size, strides), min_sizes, strict=True):
        for j in range(rows):
            for i in range(cols):
                for m in sizes:
                    out.append(((i + 0.5) / cols, (j + 0.5) / rows, m / w, m / h))
    return np.clip(np.asarray(out, np.float64), 0.0, 1.0)


def ssd(regressions: np.ndarray, priors: np.ndarray, variances: tuple[float, float]) -> np.ndarray:
    """[N, 4] raw (dx, dy, dw, dh) -> corner boxes in 0..1 of the input."""
    loc = np.asarray(regressions, np.float64)
    centre = loc[:, :2] * variances[0] * priors[:, 2:] + priors[:, :2]
    half = np.exp(loc[:, 2:] * variances[1]) * priors[:, 2:] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _one(outputs: Mapping[str, np.ndarray], name: str | None, want_boxes: bool) -> np.ndarray:
    if name is not None:
        value = outputs[name]
    else:
        fits = [v for v in outputs.values() if (np.shape(v)[-1] == 4) == want_boxes]
        if len(fits) != 1:
            shapes = {k: list(np.shape(v)) for k, v in outputs.items()}
            raise ValueError(f"cannot tell the {'boxes' if want_boxes else 'scores'} output from {shapes}: name it in [detect]")
        value = fits[0]
    a = np.asarray(value)
    if a.ndim == 3 and a.shape[0] == 1:
        return cast(np.ndarray, a[0])
    raise ValueError(f"expected one image's [1, N, K] output, got {list(a.shape)}")


def decode(outputs: Mapping[str, np.ndarray], det: DetectConfig, size: Size) -> tuple[np.ndarray, np.ndarray]:
    """One image's outputs (by name) -> corner boxes [N, 4] in input pixels and class scores [N, C]."""
    h, w = size
    if det.decoder == "yolox":
        if len(outputs) != 1:
            raise ValueError(f"yolox decodes one [1, N, 5 + C] output, got {len(outputs)}")
        head = _one(outputs, None, want_boxes=False)
        if head.shape[0] != expected_rows(det, size):
            raise ValueError(f"{head.shape[0]} rows but strides {det.strides} at {h}x{w} give {expected_rows(det, size)}")
        return yolox(head, size, det.strides)
    raw_boxes = _one(outputs, det.boxes_output, want_boxes=True).astype(np.float64)
    scores = _one(outputs, det.scores_output, want_boxes=False).astype(np.float64)
    if det.background:
        scores = scores[:, 1:]
    pixels = np.array([w, h, w, h], np.float64)
    if det.decoder == "ssd":
        priors = ssd_priors(size, det.strides, det.min_sizes)
        if len(priors) != len(raw_boxes):
            raise ValueError(f"{len(raw_boxes)} boxes but the [detect] priors number {len(priors)}")
        return ssd(raw_boxes, priors, det.variances) * pixels, scores
    boxes = raw_boxes
    if det.box_format == "cxcywh":
        boxes = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    return (boxes * pixels if det.normalized else boxes), scores


def postprocess(outputs: Mapping[str, np.ndarray], det: DetectConfig, size: Size, placement: Placement) -> Detections:
    """One image's outputs -> its best boxes in the photo: decode, best class per box, threshold, NMS, max_boxes."""
    boxes, scores = decode(outputs, det, size)
    classes = np.argmax(scores, axis=1)
    best = scores[np.arange(len(scores)), classes]
    keep = np.flatnonzero(best >= det.score_threshold)
    # NMS in the photo's pixels: a stretched input distorts IoU, the photo does not.
    photo = placement.to_original(boxes[keep], clip=False).astype(np.float64)
    kept = batched_nms(photo, best[keep], classes[keep], det.nms_iou, det.class_agnostic, det.max_boxes)
    found = placement.clip(photo[kept])
    # A box that lies wholly in the letterbox's padding clips to nothing: no object of the photo, and no IoU
    # to match it by (what a detector sees in grey padding is not compared).
    inside = kept[(found[:, 2] > found[:, 0]) & (found[:, 3] > found[:, 1])]
    found = placement.clip(photo[inside])
    return Detections(found.astype(np.float32), best[keep][inside].astype(np.float32), classes[keep][inside].astype(np.int64))
