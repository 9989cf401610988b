"""A TFLite source's contract (entry point group ``modelport.sources``), read through the TFLite interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.common.contract import Contract
from modelport.common.errors import InputError
from modelport.convert.inspect import checked_dtype, image_layout, is_dynamic, outputs_task, spatial

from .metadata import normalization
from .runtime import interpreter_class


def inspect_tflite(path: Path, shown: Path) -> Contract:
    Interpreter, _ = interpreter_class()
    try:
        interp = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as e:
        raise InputError(f"the TFLite interpreter cannot load it: {str(e).strip().splitlines()[0]}", shown) from None
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1:
        raise InputError(f"a model with {len(ins)} inputs: modelport feeds one image", shown)
    (inp,), out = ins, outs[0]
    dims = [int(d) if d > 0 else "?" for d in inp["shape_signature"]]
    layout = image_layout(dims, shown, declared="NHWC")
    channels, size = spatial(dims, layout)
    dtype = checked_dtype(inp["dtype"], shown, "input")
    task, classes, outputs = outputs_task(
        [(o["name"], [int(d) if d > 0 else "?" for d in o["shape_signature"]]) for o in outs], shown
    )
    scale, zero = inp["quantization"]
    oscale, ozero = out["quantization"]
    meta = normalization(path) if dtype == "float32" else None
    mean, std = (tuple(v * 3 if len(v) == 1 else v) for v in meta) if meta else (None, None)
    return Contract(
        kind="tflite",
        input_name=inp["name"],
        input_shape=dims,
        layout=layout,
        size=size,
        channels=channels,
        dtype=dtype,
        scale=float(scale) if dtype != "float32" else None,
        zero_point=int(zero) if dtype != "float32" else None,
        dynamic_batch=is_dynamic(dims[0]),
        output_name=out["name"],
        classes=classes,
        task=task,
        outputs=outputs,
        output_dtype=checked_dtype(out["dtype"], shown, "output"),
        output_scale=float(oscale) if out["dtype"] != np.float32 else None,
        output_zero_point=int(ozero) if out["dtype"] != np.float32 else None,
        mean=mean,
        std=std,
    )
