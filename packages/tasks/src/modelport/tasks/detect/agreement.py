"""How a row's boxes agree with the source model's on the same photos (no labels needed).

Boxes above ``score_min`` on each side are matched one to one, same class, IoU >= ``iou_min``, the
highest-IoU pairs first. Precision = matched / the row's boxes, recall = matched / the source's, F1
their harmonic mean, counted over all photos; mean IoU of the matched pairs; score drift = how far a
matched box's score moved (mean and max of |row - source|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import Detections
from .nms import iou


@dataclass(frozen=True)
class BoxAgreement:
    images: int
    source_boxes: int
    row_boxes: int
    matched: int
    precision: float
    recall: float
    f1: float
    mean_iou: float  # of the matched pairs; 1.0 when neither side found anything
    score_drift_mean: float
    score_drift_max: float


def match(row: Detections, source: Detections, iou_min: float) -> list[tuple[int, int, float]]:
    """(row index, source index, IoU) pairs: same class, IoU >= iou_min, one to one, best IoU first."""
    if not len(row) or not len(source):
        return []
    overlap = iou(row.boxes, source.boxes)
    overlap[row.classes[:, None] != source.classes[None, :]] = 0.0
    pairs = np.argwhere(overlap >= iou_min)
    # Stable on ties: equal inputs match the same way on every machine.
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -overlap[pairs[:, 0], pairs[:, 1]]))
    used_row: set[int] = set()
    used_src: set[int] = set()
    out = []
    for i, j in pairs[order]:
        if i not in used_row and j not in used_src:
            used_row.add(int(i))
            used_src.add(int(j))
            out.append((int(i), int(j), float(overlap[i, j])))
    return out


def box_agreement(rows: Sequence[Detections], sources: Sequence[Detections], score_min: float, iou_min: float) -> BoxAgreement:
    """A row's boxes against the source's, photo by photo (same order)."""
    if len(rows) != len(sources):
        raise ValueError(f"{len(rows)} photos of a row against {len(sources)} of the source")
    n_row = n_src = 0
    ious: list[float] = []
    drift: list[float] = []
    for row, src in zip(rows, sources, strict=True):
        row, src = row.above(score_min), src.above(score_min)
        n_row, n_src = n_row + len(row), n_src + len(src)
        for i, j, overlap in match(row, src, iou_min):
            ious.append(overlap)
            drift.append(abs(float(row.scores[i]) - float(src.scores[j])))
    m = len(ious)
    precision = m / n_row if n_row else float(n_src == 0)
    recall = m / n_src if n_src else float(n_row == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BoxAgreement(
        images=len(rows),
        source_boxes=n_src,
        row_boxes=n_row,
        matched=m,
        precision=precision,
        recall=recall,
        f1=f1,
        mean_iou=float(np.mean(ious)) if ious else float(n_row == 0 and n_src == 0),
        score_drift_mean=float(np.mean(drift)) if drift else 0.0,
        score_drift_max=float(np.max(drift)) if drift else 0.0,
    )
