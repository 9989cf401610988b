"""Detection: a model's outputs -> boxes in the original photo, and how two sets of boxes agree.

The pipeline for one photo: ``preprocess`` (letterbox or stretch, with the ``Placement`` that maps boxes
back), the model, ``postprocess`` (decode by the [detect] decoder, score threshold, NMS, at most
``max_boxes``, back to photo pixels). Rows are compared on these boxes (``box_agreement``), and on COCO
annotations when there are some (``coco``).
"""

from .agreement import BoxAgreement, box_agreement
from .boxes import Detections
from .decode import decode, expected_rows, postprocess
from .letterbox import Placement, prepare, preprocess
from .nms import batched_nms, iou, nms

__all__ = [
    "BoxAgreement",
    "Detections",
    "Placement",
    "batched_nms",
    "box_agreement",
    "decode",
    "expected_rows",
    "iou",
    "nms",
    "postprocess",
    "prepare",
    "preprocess",
]
