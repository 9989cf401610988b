"""Writing a backend's result: the one way every env fills ``results/<key>.json`` + ``.npy``.

In common (not bench) because envs without modelport.bench (rknn) write results too.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .agreement import compare
from .artifacts import ArtifactStore, write_atomic
from .context import StepContext
from .errors import InputError
from .machine import device_key, machine_info, run_id
from .reference import load_reference
from .schema import BackendResult, Headline, TopK


def new_result(ctx: StepContext, *, key: str, backend: str, precision: str, name: str, device: str,
               input_layout: str, input_dtype: str, status: str = "ok", reason: str | None = None) -> BackendResult:
    """A result stamped with what makes results comparable: source model sha256 and preprocessing."""
    source = ctx.store.read_manifest("source/model.tflite")
    return BackendResult(
        key=key, backend=backend, precision=precision, name=name, env=ctx.env, status=status, reason=reason,
        device=device, device_key=device_key(), run_id=run_id(), model=ctx.config.model.name,
        machine=machine_info(), model_sha256=source["sha256"] if source else None,
        preprocessing=ctx.config.input.signature, input={"layout": input_layout, "dtype": input_dtype},
    )


def headline_index(ctx: StepContext) -> int:
    names = [p.name for p in ctx.eval_images]
    return names.index(ctx.config.images.headline) if ctx.config.images.headline in names else 0


def fill_outputs(ctx: StepContext, result: BackendResult, outputs: np.ndarray) -> None:
    """Top-5 per eval image, the headline image's top-1, and agreement with the TFLite reference."""
    names = [p.name for p in ctx.eval_images]
    labels, classes = ctx.labels, outputs.shape[1]
    labels.check(classes)
    for name, out in zip(names, outputs, strict=True):
        idx = [int(i) for i in np.argsort(-out)[:5]]
        result.topk.append(TopK(image=name, indices=idx, labels=[labels.name(i, classes) for i in idx],
                                scores=[float(out[i]) for i in idx]))
    head = result.topk[headline_index(ctx)]
    result.headline = Headline(image=head.image, label=head.labels[0], confidence=head.scores[0])
    try:
        reference = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    except InputError as e:
        result.notes.append(f"no agreement: {e}")
        return
    result.agreement = compare(outputs, reference, names)


def write_result(store: ArtifactStore, result: BackendResult, outputs: np.ndarray | None = None) -> Path:
    path = store.path(f"results/{result.key}.json")
    npy = path.with_suffix(".npy")
    if outputs is not None:
        buf = io.BytesIO()
        np.save(buf, outputs, allow_pickle=False)
        write_atomic(npy, buf.getvalue())
    else:
        npy.unlink(missing_ok=True)  # never leave another run's outputs beside this result
    write_atomic(path, result.dump())
    return path
