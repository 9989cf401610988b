"""Non-maximum suppression in numpy: the same on every backend's boxes, so rows differ only by their model."""

from __future__ import annotations

from typing import cast

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every corner box in ``a`` [N, 4] with every one in ``b`` [M, 4]: [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return cast(np.ndarray, np.divide(inter, union, out=np.zeros_like(inter), where=union > 0))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices of the boxes kept, best score first; a box goes when it overlaps a better kept one by > threshold.

    Ties in score keep the earlier box (a stable sort), so equal inputs give equal outputs on every machine.
    ``limit``: stop after that many kept, the same first ones as without it (a kept box never depends on a worse
    one), without the pass over thousands of low-score boxes an SSD head leaves above a low threshold.
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    boxes = np.asarray(boxes, np.float64)
    keep: list[int] = []
    while order.size and (limit is None or len(keep) < limit):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if rest.size:
            order = rest[iou(boxes[best], boxes[rest])[0] <= iou_threshold]
        else:
            break
    return np.asarray(keep, np.int64)


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    class_agnostic: bool = False,
    limit: int | None = None,
) -> np.ndarray:
    """NMS within each class (boxes of different classes never suppress each other), or across all of them."""
    if class_agnostic or len(boxes) == 0:
        return nms(boxes, scores, iou_threshold, limit)
    boxes = np.asarray(boxes, np.float64)
    # Shift each class to its own region of the plane: one NMS pass, no overlap between classes.
    span = float(np.max(np.abs(boxes))) * 2 + 1
    return nms(boxes + (np.asarray(classes, np.float64) * span)[:, None], scores, iou_threshold, limit)
