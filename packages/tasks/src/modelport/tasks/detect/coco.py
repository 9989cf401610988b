"""COCO mAP@[.5:.95] and AP50 of a model's boxes against COCO annotations, by pycocotools' COCOeval.

Class index i is the i-th category of the annotation file by ascending id (COCO's 80 of ids 1..90:
the order YOLOX and most COCO detectors are trained in). Photos are matched by file name.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.errors import InputError, ToolchainMissing

from .boxes import Detections


@dataclass(frozen=True)
class CocoScore:
    map: float  # mAP@[.5:.95], area all, 100 detections
    ap50: float
    images: int
    annotations: int
    # (category name, its annotations on these photos, AP@[.5:.95]) for each category present, most annotations first
    per_class: tuple[tuple[str, int, float], ...] = ()


class CocoSet:
    """An ``instances.json``: its photos by file name and its category ids in class order."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.images = {im["file_name"]: int(im["id"]) for im in data["images"]}
            self.category_ids = sorted(int(c["id"]) for c in data["categories"])
            self.category_names = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
            self.annotations = len(data["annotations"])
        except FileNotFoundError:
            raise InputError("no such COCO annotation file", self.path) from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise InputError(f"not a COCO instances file ({type(e).__name__}: {e})", self.path) from None
        self.data = data

    def results(self, found: Mapping[str, Detections]) -> list[dict[str, Any]]:
        """COCO result entries (xywh boxes in photo pixels) for photos named by file name."""
        out = []
        for name, det in found.items():
            if name not in self.images:
                raise InputError(f"photo {name!r} is not in the annotations", self.path)
            if len(det) and int(det.classes.max()) >= len(self.category_ids):
                raise ValueError(f"class {int(det.classes.max())} but {self.path} has {len(self.category_ids)} categories")
            xywh = np.concatenate([det.boxes[:, :2], det.boxes[:, 2:] - det.boxes[:, :2]], axis=1)
            for box, score, cls in zip(xywh.tolist(), det.scores.tolist(), det.classes.tolist(), strict=True):
                out.append(
                    {
                        "image_id": self.images[name],
                        "category_id": self.category_ids[cls],
                        "bbox": [round(v, 3) for v in box],
                        "score": float(score),
                    }
                )
        return out

    def evaluate(self, found: Mapping[str, Detections]) -> CocoScore:
        """mAP@[.5:.95] and AP50 over the photos in ``found`` (photos without boxes count, as COCO counts them)."""
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise ToolchainMissing("pycocotools is not installed: COCO mAP needs it (pip install pycocotools)") from None
        results = self.results(found)
        ids = sorted(self.images[name] for name in found)
        # pycocotools prints its progress and summary: keep them out of modelport's own output.
        with contextlib.redirect_stdout(io.StringIO()):
            truth = COCO()
            truth.dataset = self.data
            truth.createIndex()
            if not results:
                return CocoScore(0.0, 0.0, len(ids), self.annotations)
            ev = COCOeval(truth, truth.loadRes(results), "bbox")
            ev.params.imgIds = ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return CocoScore(float(ev.stats[0]), float(ev.stats[1]), len(ids), self.annotations, self._per_class(ev, ids))

    def _per_class(self, ev: Any, ids: list[int]) -> tuple[tuple[str, int, float], ...]:
        """AP@[.5:.95] per category as COCOeval's stats[0] is computed, one category at a time: precision
        [IoU, recall, category, area, max detections] at area "all" and 100 detections, -1 (no such
        annotation) left out."""
        wanted = set(ids)
        counts: dict[int, int] = {}
        for a in self.data["annotations"]:
            if int(a["image_id"]) in wanted and not a.get("iscrowd", 0):
                counts[int(a["category_id"])] = counts.get(int(a["category_id"]), 0) + 1
        precision = np.asarray(ev.eval["precision"])
        out = []
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            if counts.get(int(cat)) and (p > -1).any():
                out.append((self.category_names[int(cat)], counts[int(cat)], float(np.mean(p[p > -1]))))
        return tuple(sorted(out, key=lambda t: (-t[1], t[0])))
