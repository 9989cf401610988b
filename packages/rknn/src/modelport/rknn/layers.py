"""RKNN INT8 per layer in the common form: ``rknn/accuracy/analysis.json`` -> ``analysis/rknn-int8.json``.

rknn-toolkit2 names its layers by the ONNX tensors they output (``Relu6__5:0``; a fused conv is
listed with no numbers and its activation carries them), so the mapping is by name: a tensor of
``onnx/model.onnx`` or a node's name. Its own layers (``exDataConvert`` casts, ``exSoftmax13`` ->
``Reshape_sw``) have no ONNX counterpart and are listed as unmapped. Cosine is the toolkit's
"entire" cosine against its float run; SQNR is derived from it (the toolkit reports no signal
norm); own SQNR from its "single" cosine (the layer alone, on float inputs).
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from modelport.common import layer_analysis, onnx_layers
from modelport.common.context import StepContext
from modelport.common.log import step

from . import analysis
from .convert import ONNX
from .layer_doc import KEY as KEY
from .layer_doc import OWN_TYPES as OWN_TYPES
from .layer_doc import document as document


def run(ctx: StepContext, force: bool = False, verbose: bool = False) -> dict[str, Any]:
    """accuracy_analysis (cached) -> analysis/rknn-int8.json."""
    analysis.run(ctx, force=force, verbose=verbose)
    store, out = ctx.store, layer_analysis.analysis_path(KEY)
    with store.produce(
        out,
        inputs={"analysis": store.path(analysis.ANALYSIS), "onnx": store.path(ONNX)},
        tool="modelport analyze rknn-int8",
        tool_version="1",
        options={},
        force=force or ctx.force,
    ) as job:
        if not job.cached:
            step(f"analyze {KEY}: {analysis.ANALYSIS} -> {out}")
            t0 = time.monotonic()
            doc = document(ctx, json.loads(store.path(analysis.ANALYSIS).read_text()), onnx_layers.load(store.path(ONNX)))
            doc["seconds"] = round(doc["seconds"] + time.monotonic() - t0, 1)
            job.tmp().write_text(json.dumps(doc, indent=1) + "\n")
    return cast(dict[str, Any], json.loads(store.path(out).read_text()))
