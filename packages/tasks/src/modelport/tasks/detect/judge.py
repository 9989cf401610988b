"""A detector row against its source, the one place every verification and benchmark decodes and judges.

Outputs by name per photo -> ``postprocess`` per photo (timed apart from the model) -> the row's boxes
against the source's (``box_agreement``) and, with [detect] annotations, COCO mAP of both on the same
photos. The source's outputs and boxes are stored once, by ``convert reference`` (``reference_arrays``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modelport.common.agreement import compare
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ToolchainMissing
from modelport.common.labels import Labels
from modelport.common.letterbox import Placement
from modelport.common.reference import load_detect_reference
from modelport.common.results import headline_index
from modelport.common.schema import Agreement, BackendResult, DetectAgreement, DrawnBox, Headline, PhotoBoxes, TopK

from .agreement import box_agreement
from .boxes import Detections
from .coco import CocoSet
from .decode import postprocess

Outputs = Mapping[str, np.ndarray]
_OUT = "output/"


def decoder(config: Config) -> Callable[[Outputs, Placement], Detections]:
    """One photo's decode + NMS under ``config`` ([detect] and the input size): its outputs by name and its
    letterbox placement -> its boxes in the photo's own pixels. What verification, bench and a frame's
    postprocess stage all run."""
    det = config.detector
    if det is None:
        raise ValueError("[model] task is not detect")
    size = (config.input.size[0], config.input.size[1])
    return lambda outputs, placement: postprocess(outputs, det, size, placement)


def decode_all(outputs: Sequence[Outputs], config: Config, placements: Sequence[Placement]) -> tuple[list[Detections], list[int]]:
    """Each photo's boxes in its own pixels, and the ns each photo's decode + NMS took."""
    decode = decoder(config)
    found, ns = [], []
    for out, placement in zip(outputs, placements, strict=True):
        t0 = time.perf_counter_ns()
        found.append(decode(out, placement))
        ns.append(time.perf_counter_ns() - t0)
    return found, ns


def reference_arrays(outputs: Sequence[Outputs], found: Sequence[Detections]) -> dict[str, np.ndarray]:
    """What a detector's reference file holds: each output stacked over the photos, and the decoded boxes."""
    arrays = {f"{_OUT}{name}": np.stack([np.asarray(o[name]) for o in outputs]) for name in outputs[0]}
    arrays["boxes"] = np.concatenate([d.boxes for d in found]).reshape(-1, 4).astype(np.float32)
    arrays["scores"] = np.concatenate([d.scores for d in found]).astype(np.float32)
    arrays["classes"] = np.concatenate([d.classes for d in found]).astype(np.int64)
    arrays["photo"] = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(found)])
    return arrays


def reference_outputs(arrays: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    names = [k for k in arrays if k.startswith(_OUT)]
    count = len(arrays[names[0]]) if names else 0
    return [{k[len(_OUT) :]: arrays[k][i] for k in names} for i in range(count)]


def reference_detections(arrays: Mapping[str, np.ndarray], photos: int) -> list[Detections]:
    photo = arrays["photo"]
    return [
        Detections(arrays["boxes"][photo == i], arrays["scores"][photo == i], arrays["classes"][photo == i])
        for i in range(photos)
    ]


def flat(outputs: Sequence[Outputs]) -> np.ndarray:
    """[photos, values]: every output of each photo flattened, outputs in name order (what results/<key>.npy holds)."""
    return np.stack([np.concatenate([np.asarray(o[k], np.float32).ravel() for k in sorted(o)]) for o in outputs])


def judge(
    config: Config,
    names: Sequence[str],
    outputs: Sequence[Outputs],
    reference: Mapping[str, np.ndarray],
    placements: Sequence[Placement],
) -> tuple[Agreement, list[Detections], list[int]]:
    """The row's agreement with the source (its ``detect`` part is what the floors judge), its boxes, and the
    ns of each photo's decode + NMS."""
    det = config.detector
    if det is None:
        raise ValueError("[model] task is not detect")
    found, ns = decode_all(outputs, config, placements)
    sources = reference_detections(reference, len(names))
    boxes = box_agreement(found, sources, det.agreement_score, det.match_iou)
    scores: dict[str, float | str | None] = {"map_note": "no [detect] annotations: no mAP"}
    per_class: list[dict[str, Any]] | None = None
    if det.annotations is not None:
        coco = CocoSet(det.annotations)
        try:
            row = coco.evaluate(dict(zip(names, found, strict=True)))
            src = coco.evaluate(dict(zip(names, sources, strict=True)))
            scores = {"map": row.map, "ap50": row.ap50, "source_map": src.map, "source_ap50": src.ap50, "map_note": None}
            per_class = [{"name": n, "instances": c, "ap": ap} for n, c, ap in row.per_class]
        except ToolchainMissing as e:
            scores = {"map_note": f"no mAP: {e.message}"}
    detect = DetectAgreement.model_validate(
        {
            "source_boxes": boxes.source_boxes,
            "row_boxes": boxes.row_boxes,
            "matched": boxes.matched,
            "precision": boxes.precision,
            "recall": boxes.recall,
            "f1": boxes.f1,
            "mean_iou": boxes.mean_iou,
            "score_drift_mean": boxes.score_drift_mean,
            "score_drift_max": boxes.score_drift_max,
        }
        | scores
        | {"class_ap": per_class}
    )
    raw = compare(flat(outputs), flat(reference_outputs(reference)), list(names))
    return raw.model_copy(update={"detect": detect}), found, ns


def top_boxes(name: str, found: Detections, labels: Labels, classes: int, k: int = 5) -> TopK:
    """A photo's ``k`` best boxes as the report's top-k: class index, its name, score."""
    best = found.take(np.argsort(-found.scores, kind="stable")[:k])
    index = [int(c) for c in best.classes]
    return TopK(
        image=name, indices=index, labels=[labels.name(c, classes) for c in index], scores=[float(s) for s in best.scores]
    )


DRAWN = 100  # boxes per panel at most: what PhotoBoxes accepts, and more than a photo legibly shows


def drawn(found: Detections, labels: Labels, classes: int, threshold: float) -> list[DrawnBox]:
    """A photo's boxes above ``threshold``, best first, as the report draws them (0.1 px is finer than a line)."""
    best = found.above(threshold)
    best = best.take(np.argsort(-best.scores, kind="stable")[:DRAWN])
    return [
        DrawnBox(box=[round(float(v), 1) for v in b], cls=int(c), label=labels.name(int(c), classes), score=round(float(s), 4))
        for b, c, s in zip(best.boxes, best.classes, best.scores, strict=True)
    ]


def photo_boxes(
    name: str, placement: Placement, found: Detections, source: Detections, labels: Labels, classes: int, config: Config
) -> PhotoBoxes:
    """The headline photo's boxes, the row's and the source's, above [detect] agreement_score (the boxes
    the agreement matches): what the report draws side by side."""
    det = config.detector
    threshold = det.agreement_score if det is not None else 0.0
    return PhotoBoxes(
        image=name,
        width=placement.width,
        height=placement.height,
        boxes=drawn(found, labels, classes, threshold),
        source=drawn(source, labels, classes, threshold),
    )


def fill_detections(
    ctx: StepContext, result: BackendResult, outputs: Sequence[Outputs], placements: Sequence[Placement]
) -> np.ndarray:
    """A detector row's fill_outputs: its best boxes per photo as top-k, the headline photo's best box,
    its agreement with the source; returns what results/<key>.npy holds (``flat``)."""
    names = [p.name for p in ctx.eval_images]
    classes = ctx.contract.classes
    ctx.labels.check(classes)
    try:
        reference = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    except InputError as e:
        found, _ = decode_all(outputs, ctx.config, placements)
        result.agreement_note = f"agreement not computed: {e}"
    else:
        result.agreement, found, _ = judge(ctx.config, names, outputs, reference, placements)
        detect = result.agreement.detect
        if detect is not None:
            i = headline_index(ctx)
            source = reference_detections(reference, len(names))[i]
            detect.photo = photo_boxes(names[i], placements[i], found[i], source, ctx.labels, classes, ctx.config)
    result.topk = [top_boxes(name, d, ctx.labels, classes) for name, d in zip(names, found, strict=True)]
    head = result.topk[headline_index(ctx)]
    if head.indices:
        result.headline = Headline(image=head.image, label=head.labels[0], confidence=head.scores[0])
    return flat(outputs)


def decode_call(outputs: Outputs, config: Config, placement: Placement) -> Callable[[], Detections]:
    """One photo's decode + NMS as a call to time (the row's postprocess ms, apart from the model's)."""
    decode = decoder(config)
    return lambda: decode(outputs, placement)
