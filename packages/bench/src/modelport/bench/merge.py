"""Results from several machines and models in one report: identity, precedence, and the matrix view.

A result is identified by (model, backend key, device key). For one identity, a result that
was measured (ok or failed) beats a skipped one, and then the newer run beats the older, so a
CPU box's skipped TensorRT row never hides a GPU box's measured one. Speed ratios are taken
only against the reference row of the same model on the same device.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from modelport.common.artifacts import ArtifactStore, write_atomic
from modelport.common.bundle import Source
from modelport.common.machine import device_key as this_device
from modelport.common.safe_names import inside, slug
from modelport.common.schema import BackendResult

MERGED = "merged"  # artifacts/merged/<model>/<device>/<key>.json (+ .npy): the merged store


def model_id(r: BackendResult) -> str:
    """The model a result measured: its name and the source's sha256 (two versions of one model differ)."""
    return f"{r.model or 'model'}@{(r.model_sha256 or 'unknown')[:12]}"


def device_of(r: BackendResult) -> str:
    return r.device_key or this_device()


def identity(r: BackendResult) -> tuple[str, str, str]:
    return model_id(r), r.key, device_of(r)


def _precedence(r: BackendResult) -> tuple[Any, ...]:
    return r.status != "skipped", r.created_utc, r.run_id or ""


def merge(results: Iterable[BackendResult]) -> list[BackendResult]:
    best: dict[tuple[Any, ...], BackendResult] = {}
    for r in results:
        k = identity(r)
        if k not in best or _precedence(r) > _precedence(best[k]):
            best[k] = r
    return list(best.values())


def reference_for(r: BackendResult, results: list[BackendResult], reference_keys: Collection[str]) -> BackendResult | None:
    """The reference row (the source model's: one of ``reference_keys``) of the same model on the same device."""
    return next(
        (
            x
            for x in results
            if x.key in reference_keys and x.status == "ok" and model_id(x) == model_id(r) and device_of(x) == device_of(r)
        ),
        None,
    )


def matrix(results: list[BackendResult]) -> dict[str, Any]:
    """{device: {model: {key: {status, median_ms, cosine_min, f1}}}}: the models x backends view per device."""
    out: dict[str, Any] = {}
    for r in results:
        cell = {
            "status": r.status,
            "median_ms": r.latency_ms.median if r.latency_ms else None,
            "cosine_min": r.agreement.cosine_min if r.agreement and r.agreement.detect is None else None,
            "f1": r.agreement.detect.f1 if r.agreement and r.agreement.detect else None,  # a detector's boxes vs its source's
        }
        out.setdefault(device_of(r), {}).setdefault(model_id(r), {})[r.key] = cell
    return out


def store_merged(store: ArtifactStore, results: list[BackendResult], sources: list[Source]) -> Path:
    """Write the merged set per model and device (with each result's raw outputs), replacing the last merge."""
    root = store.path(MERGED)
    paths = [  # every name is checked before anything is removed or written
        inside(root, f"{slug(model_id(r))}/{slug(device_of(r), 'device')}/{r.key}.json", "merged result", model_id(r))
        for r in results
    ]
    shutil.rmtree(root, ignore_errors=True)
    outputs = {}
    for s in sources:
        for r in s.results:
            npy = s.root / "results" / f"{r.key}.npy"
            if npy.is_file():
                outputs[id(r)] = npy
    for r, path in zip(results, paths, strict=True):
        write_atomic(path, r.dump())
        if id(r) in outputs:
            write_atomic(path.with_suffix(".npy"), outputs[id(r)].read_bytes())
    write_atomic(
        root / "index.json", json.dumps({"sources": [s.origin for s in sources], "results": len(results)}, indent=2) + "\n"
    )
    return root
