"""Writing a backend's result: the one way every env fills ``results/<key>.json`` + ``.npy``.

In common (not bench) because envs without modelport.bench (rknn) write results too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import cast

import numpy as np
from pydantic import ValidationError

from .agreement import compare
from .artifacts import ArtifactStore, is_source_model, write_atomic
from .context import StepContext
from .errors import ConfigError, InputError, ModelportError
from .log import warn
from .machine import device_key, machine_info, run_id
from .recovery import stamp_speed
from .reference import load_reference
from .schema import RESULT_SCHEMA, BackendResult, Headline, Status, TopK


def new_result(
    ctx: StepContext,
    *,
    key: str,
    backend: str,
    precision: str,
    name: str,
    device: str,
    input_layout: str,
    input_dtype: str,
    status: Status = "ok",
    reason: str | None = None,
) -> BackendResult:
    """A result stamped with what makes results comparable: source model sha256 and preprocessing."""
    source = ctx.store.current_source()
    return BackendResult(
        key=key,
        backend=backend,
        precision=precision,
        name=name,
        env=ctx.env,
        status=status,
        reason=reason,
        device=device,
        device_key=device_key(),
        run_id=run_id(),
        model=ctx.config.model.name,
        machine=machine_info(),
        model_sha256=source["sha256"] if source else None,
        preprocessing=ctx.config.input.signature,
        input={"layout": input_layout, "dtype": input_dtype},
    )


def headline_index(ctx: StepContext) -> int:
    """The timed image. A headline that was set but names no eval image is an error, never another image."""
    names = [p.name for p in ctx.eval_images]
    images = ctx.config.images
    if images.headline in names:
        return names.index(images.headline)
    if "headline" in images.model_fields_set:
        raise ConfigError(
            f"[images] headline {images.headline!r} is not an eval image; valid: {', '.join(names)}",
            ctx.config.source or "config",
        )
    return 0  # the default name is absent from these eval images: the first one is timed


def fill_outputs(ctx: StepContext, result: BackendResult, outputs: np.ndarray) -> None:
    """Top-5 per eval image, the headline image's top-1, and agreement with the reference (the source model's outputs)."""
    names = [p.name for p in ctx.eval_images]
    labels, classes = ctx.labels, outputs.shape[1]
    labels.check(classes)
    for name, out in zip(names, outputs, strict=True):
        idx = [int(i) for i in np.argsort(-out)[:5]]
        result.topk.append(
            TopK(image=name, indices=idx, labels=[labels.name(i, classes) for i in idx], scores=[float(out[i]) for i in idx])
        )
    head = result.topk[headline_index(ctx)]
    result.headline = Headline(image=head.image, label=head.labels[0], confidence=head.scores[0])
    try:
        reference = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    except InputError as e:
        result.agreement_note = f"agreement not computed: {e}"
        return
    result.agreement = compare(outputs, reference, names)


LAST_OK = "results/last-ok"  # a good result a later failed run would have replaced: kept here, shown by the report


def stamp_source(store: ArtifactStore, result: BackendResult) -> None:
    """Record the lineage of the artifact the result measured, and take the model sha256 from its root."""
    if not result.artifact:
        return
    chain = store.lineage(store.path(result.artifact))
    result.source_chain = chain
    if chain and is_source_model(chain[-1]["path"]):
        result.model_sha256 = chain[-1]["sha256"]


def _validated(result: BackendResult, outputs: np.ndarray | None) -> BackendResult:
    """The result as the report will read it back; refuses what must never replace a file."""
    where = f"results/{result.key}.json"
    try:
        checked = BackendResult.model_validate_json(result.dump())
    except ModelportError as e:  # a NaN or infinity somewhere: no JSON reader would take the file
        raise ModelportError(f"refusing to write an invalid result ({e.message})", where) from None
    except ValidationError as e:
        raise ModelportError(
            f"refusing to write an invalid result ({e.errors()[0]['loc']}: {e.errors()[0]['msg']})", where
        ) from None
    if outputs is not None:
        if outputs.ndim != 2 or outputs.shape[0] != len(result.topk):
            raise ModelportError(
                f"refusing to write outputs of shape {tuple(outputs.shape)} for {len(result.topk)} images", where
            )
        if not np.isfinite(outputs).all():
            raise ModelportError("refusing to write outputs with NaN or infinite values", where)
    elif result.status == "ok" and result.topk:
        raise ModelportError("refusing to write an ok result without its raw outputs", where)
    return checked


def write_result(store: ArtifactStore, result: BackendResult, outputs: np.ndarray | None = None) -> Path:
    """Write ``results/<key>.json`` + ``.npy`` as one pair, without losing a good result.

    The json records the npy's sha256; the npy is renamed into place first, then the json, so a
    reader that sees a json sees its own npy (or detects the mismatch). A skipped result never
    replaces an ok one; a failed one does (the row must show), but the ok pair moves to
    ``results/last-ok/`` and the report says it was kept.
    """
    stamp_source(store, result)
    stamp_speed(store, result)
    path = store.path(f"results/{result.key}.json")
    npy = path.with_suffix(".npy")
    data = None
    if outputs is not None:
        buf = io.BytesIO()
        np.save(buf, outputs, allow_pickle=False)
        data = buf.getvalue()
        result.outputs_sha256 = hashlib.sha256(data).hexdigest()
    else:
        result.outputs_sha256 = None
    _validated(result, outputs)
    previous = _previous_ok(store, path)
    if previous is not None and result.status == "skipped":
        warn(f"{result.key}: kept the ok result from {previous.created_utc} (this run skipped it: {result.reason})")
        return path
    last_ok = store.path(f"{LAST_OK}/{result.key}.json")
    if previous is not None and result.status == "failed":
        last_ok.parent.mkdir(parents=True, exist_ok=True)
        if npy.is_file():
            os.replace(npy, last_ok.with_suffix(".npy"))
        os.replace(path, last_ok)
    elif result.status == "ok":
        last_ok.unlink(missing_ok=True)
        last_ok.with_suffix(".npy").unlink(missing_ok=True)
    if data is not None:
        write_atomic(npy, data)
        write_atomic(path, result.dump())
    else:
        write_atomic(path, result.dump())
        npy.unlink(missing_ok=True)  # never leave another run's outputs beside this result
    return path


def _previous_ok(store: ArtifactStore, path: Path) -> BackendResult | None:
    try:
        r = read_result(path)
    except (InputError, OSError):
        return None
    return r if r.status == "ok" and outputs_problem(r, path) is None else None


def read_result(path: Path) -> BackendResult:
    """One result file, or InputError saying in one line why it is not one."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (a result file is JSON)", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise InputError(f"not a JSON object (found a {type(data).__name__})", path)
    if data.get("schema") != RESULT_SCHEMA:
        raise InputError(f"result schema {data.get('schema')!r} is not {RESULT_SCHEMA!r}", path)
    try:
        return BackendResult.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "result"
        raise InputError(f"invalid result: {where}: {first['msg'].removeprefix('Value error, ')}", path) from None


def outputs_problem(result: BackendResult, path: Path) -> str | None:
    """Why ``path``'s .npy is not this result's raw outputs (None: the pair matches or has no outputs)."""
    if not result.outputs_sha256:
        return None
    npy = path.with_suffix(".npy")
    if not npy.is_file():
        return f"its raw outputs {npy.name} are missing"
    if hashlib.sha256(npy.read_bytes()).hexdigest() != result.outputs_sha256:
        return f"its raw outputs {npy.name} belong to another run (interrupted write?)"
    return None


def read_outputs(path: Path) -> np.ndarray:
    """The raw outputs beside result ``path``, checked against the sha256 the result recorded."""
    result = read_result(path)
    problem = outputs_problem(result, path) or (None if result.outputs_sha256 else "records no raw outputs")
    if problem:
        raise InputError(problem, path)
    return cast(np.ndarray, np.load(path.with_suffix(".npy"), allow_pickle=False))
