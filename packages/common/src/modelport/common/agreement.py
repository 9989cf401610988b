"""How far a backend's outputs are from the reference's, and the accuracy floors.

Runtimes produce outputs; only this module compares them (as Polygraphy keeps its
comparator apart from its runners).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import AccuracyGateError
from .schema import Agreement, DetectAgreement, ImageAgreement

if TYPE_CHECKING:
    from .config import AccuracyConfig, Config

Kind = Literal["float", "int8"]


def floors(accuracy: AccuracyConfig, kind: Kind) -> dict[str, float]:
    """The [accuracy] floors for a kind of model, keyed by Agreement field."""
    if kind == "float":
        return {"top1": accuracy.fp_top1_min, "cosine_min": accuracy.fp_cosine_min}
    return {"top1": accuracy.int8_top1_min, "cosine_mean": accuracy.int8_cosine_mean_min, "cosine_min": accuracy.int8_cosine_min}


def detect_floors(accuracy: AccuracyConfig, kind: Kind) -> dict[str, float]:
    """A detector's floors: F1 of its boxes against the source's, and its COCO mAP against the source's."""
    if kind == "float":
        return {"f1": accuracy.detect_fp_f1_min, "map_drop_max": accuracy.detect_fp_map_drop_max}
    return {"f1": accuracy.detect_int8_f1_min, "map_ratio_min": accuracy.detect_int8_map_ratio_min}


def detect_failures(det: DetectAgreement, kind: Kind, accuracy: AccuracyConfig) -> list[str]:
    floor = detect_floors(accuracy, kind)
    failures = []
    if det.f1 < floor["f1"] - 1e-12:
        failures.append(f"F1 vs source {det.f1:.4f} < {floor['f1']}")
    if det.map is not None and det.source_map is not None:
        if kind == "float" and det.map < det.source_map - floor["map_drop_max"] - 1e-12:
            failures.append(f"mAP {det.map:.4f} < source {det.source_map:.4f} - {floor['map_drop_max']}")
        if kind == "int8" and det.map < det.source_map * floor["map_ratio_min"] - 1e-12:
            failures.append(f"mAP {det.map:.4f} < {floor['map_ratio_min']:.0%} of source {det.source_map:.4f}")
    return failures


def compare(outputs: np.ndarray, reference: np.ndarray, names: Sequence[str]) -> Agreement:
    a = np.asarray(outputs, dtype=np.float64).reshape(len(names), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(names), -1)
    if a.shape != b.shape:
        raise ValueError(f"outputs {a.shape} and reference {b.shape} differ in shape")
    per = []
    for name, x, y in zip(names, a, b, strict=True):
        denom = np.linalg.norm(x) * np.linalg.norm(y)
        top5x, top5y = set(np.argsort(-x)[:5]), set(np.argsort(-y)[:5])
        per.append(
            ImageAgreement(
                image=name,
                top1_match=bool(np.argmax(x) == np.argmax(y)),
                top5_overlap=len(top5x & top5y) / 5.0,
                cosine=float(np.dot(x, y) / denom) if denom > 0 else 0.0,
                max_abs_diff=float(np.max(np.abs(x - y))),
                mse=float(np.mean((x - y) ** 2)),
            )
        )
    cos = [p.cosine for p in per]
    return Agreement(
        images=len(per),
        top1=sum(p.top1_match for p in per) / len(per),
        top5_overlap=float(np.mean([p.top5_overlap for p in per])),
        cosine_min=float(min(cos)),
        cosine_mean=float(np.mean(cos)),
        max_abs_diff=float(max(p.max_abs_diff for p in per)),
        mse=float(np.mean([p.mse for p in per])),
        per_image=per,
    )


def gate_failures(agreement: Agreement, kind: Kind, accuracy: AccuracyConfig) -> list[str]:
    if agreement.detect is not None:
        return detect_failures(agreement.detect, kind, accuracy)
    floor = floors(accuracy, kind)
    failures = []
    for metric, minimum in floor.items():
        value = getattr(agreement, metric)
        if value < minimum - 1e-12:
            failures.append(f"{metric} {value:.4f} < {minimum}")
    if failures and kind == "float":
        bad = [p.image for p in agreement.per_image if not p.top1_match or p.cosine < floor["cosine_min"]]
        failures.append(f"images: {', '.join(bad)}")
    return failures


def gate_kind(kind: Kind, config: Config) -> Kind:
    """The floors a model made from this config's source meets. A quantized source is one quantization
    away from every float model made from it, so every row is held to the INT8 floors."""
    contract = config.contract
    return "int8" if contract is not None and contract.quantized else kind


def gate_options(config: Config, kind: Kind) -> dict[str, dict[str, float] | None]:
    """What a verified step's cache key holds of its gate: the floors its output was held to (None with
    verification off), so a changed floor rechecks an up-to-date model instead of trusting the old verdict."""
    judge = floors if config.detector is None else detect_floors
    gated = judge(config.accuracy, gate_kind(kind, config)) if config.convert.verify else None
    return {"floors": gated}


def check_gate(agreement: Agreement, kind: Kind, what: str | Path, accuracy: AccuracyConfig) -> None:
    """Raise AccuracyGateError (carrying the agreement) when the model is below the [accuracy] floors for its kind."""
    failures = gate_failures(agreement, kind, accuracy)
    if failures:
        raise AccuracyGateError(f"{kind} model disagrees with the reference: {'; '.join(failures)}", what, agreement=agreement)
