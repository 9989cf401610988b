"""Read a source model's contract (modelport.common.contract) from the model itself.

A TFLite model through the interpreter (and its metadata, when present), an ONNX model
through ``onnx``. The outputs say the task: one ``[batch, N]`` is a classifier; one
``[1, N, 5 + C]`` (a YOLOX-style raw head) or two, boxes ``[1, N, 4]`` and scores
``[1, N, C]``, a detector. Everything else is refused here, as one line naming the file:
two inputs, an input that is not an image (rank 4 with 1 or 3 channels), outputs of no
known layout, a non-float ONNX input.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np

from modelport.common.contract import Contract, Task, TensorInfo
from modelport.common.errors import InputError, ToolchainMissing
from modelport.common.preprocess import DType, Layout
from modelport.common.registry import load

TFLITE_IDENTIFIER = b"TFL3"
CHANNELS = (1, 3)


def source_kind(path: Path) -> str:
    """ "tflite" or "onnx", from the file's bytes (a TFLite flatbuffer says so at offset 4); "caffe"
    for a .prototxt (a text network, its weights beside it)."""
    if path.suffix.lower() == ".prototxt":
        return "caffe"
    head = path.read_bytes()[:8] if path.stat().st_size >= 8 else b""
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if path.suffix.lower() == ".tflite":
        raise InputError("not a TFLite flatbuffer (missing 'TFL3' identifier)", path)
    return "onnx"


def inspect(path: Path, shown: Path | None = None) -> Contract:
    """The contract of the model at ``path`` (errors name ``shown``, the user's file)."""
    shown = shown or path
    kind = source_kind(path)
    return inspect_onnx(path, shown) if kind == "onnx" else reader(kind)(path, shown)


def reader(kind: str) -> Callable[[Path, Path], Contract]:
    """The contract reader of a source kind a backend package registers (``modelport.sources``: tflite)."""
    found = {ep.name: ep.value for ep in entry_points(group="modelport.sources")}
    if kind not in found:
        raise ToolchainMissing(f"no installed package reads {kind} models (the tf-onnx env has them)")
    return cast(Callable[[Path, Path], Contract], load(found, kind, "source kind"))


def image_layout(dims: list[Any], shown: Path, declared: Layout | None = None) -> Layout:
    """NHWC or NCHW from where the 1 or 3 channels sit (TFLite inputs are NHWC by definition)."""
    if len(dims) != 4:
        raise InputError(f"input is not an image: rank {len(dims)} {dims} (expected 4: batch, height, width, channels)", shown)
    if declared:
        if dims[3] not in CHANNELS:
            raise InputError(f"input is not an image: {dims} has {dims[3]} channels (expected 1 or 3)", shown)
        return declared
    if dims[1] in CHANNELS and dims[3] not in CHANNELS:
        return "NCHW"
    if dims[3] in CHANNELS:
        return "NHWC" if dims[1] not in CHANNELS else "NCHW"
    raise InputError(f"input is not an image: {dims} has no axis of 1 or 3 channels (NCHW or NHWC)", shown)


def spatial(dims: list[Any], layout: Layout) -> tuple[Literal[1, 3], tuple[int, int] | None]:
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    static = isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    return cast("Literal[1, 3]", c), ((h, w) if static else None)  # image_layout found 1 or 3 on this axis


def _static(dims: list[Any]) -> bool:
    return all(isinstance(d, int) and d > 0 for d in dims[1:])


def outputs_task(outputs: list[tuple[str, list[Any]]], shown: Path) -> tuple[Task, int, tuple[TensorInfo, ...]]:
    """The task, the number of classes and the outputs, from the output layouts; one line for any other."""
    infos = tuple(TensorInfo(name=name, shape=dims) for name, dims in outputs)
    shapes = ", ".join(str(dims) for _, dims in outputs)
    if len(outputs) == 1:
        (_, dims), *_ = outputs
        if len(dims) == 2 and _static(dims):
            return "classify", dims[1], ()
        if len(dims) == 3 and _static(dims) and dims[2] >= 6 and dims[1] > dims[2]:
            return "detect", dims[2] - 5, infos  # [1, N, 4 box + 1 objectness + C classes]
        if len(dims) == 3 and _static(dims) and dims[1] >= 6 and dims[2] > dims[1]:
            raise InputError(f"output {dims} is a channels-first detector head (YOLOv8-style): not decoded yet", shown)
        raise InputError(f"output is neither [batch, N] class scores nor a [1, N, 5 + C] detector head: {dims}", shown)
    if len(outputs) == 2 and all(len(d) == 3 and _static(d) for _, d in outputs):
        boxes = [d for _, d in outputs if d[2] == 4]
        scores = [d for _, d in outputs if d[2] != 4]
        if len(boxes) == 1 and len(scores) == 1 and boxes[0][1] == scores[0][1]:
            return "detect", scores[0][2], infos
    raise InputError(
        f"{len(outputs)} outputs ({shapes}): a classifier has one [batch, N], a detector one [1, N, 5 + C] "
        "or boxes [1, N, 4] and scores [1, N, C]",
        shown,
    )


def boxes_decoded(path: Path, output: str) -> bool | None:
    """Whether an ONNX model decodes its boxes itself (an Exp feeds the output: exp(size regression))."""
    import onnx

    if source_kind(path) != "onnx":
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    seen, todo = set(), [output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        if node.op_type == "Exp":
            return True
        seen.add(id(node))
        todo.extend(node.input)
    return False


def is_dynamic(d: object) -> bool:
    return not isinstance(d, int) or d <= 0


def checked_dtype(dtype: Any, shown: Path, what: str) -> DType:
    name = np.dtype(dtype).name
    if name not in get_args(DType):
        raise InputError(f"{what} dtype {name} is not float32, uint8 or int8", shown)
    return cast(DType, name)


def inspect_onnx(path: Path, shown: Path) -> Contract:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError/ValidationError/OSError for a damaged file
        raise InputError(f"neither a TFLite flatbuffer nor a readable ONNX model ({type(e).__name__})", shown) from None
    if not model.graph.node:
        raise InputError("neither a TFLite flatbuffer nor an ONNX model with a graph", shown)
    initializers = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in initializers]
    outs = list(model.graph.output)
    if len(ins) != 1:
        raise InputError(f"a model with {len(ins)} inputs: modelport feeds one image", shown)
    (inp,), out = ins, outs[0]
    task, classes, outputs = outputs_task([(o.name, _onnx_dims(o)) for o in outs], shown)
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        name = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name
        raise InputError(f"input {inp.name!r} is {name}: an ONNX source must take float32", shown)
    dims = _onnx_dims(inp)
    layout = image_layout(dims, shown)
    channels, size = spatial(dims, layout)
    return Contract(
        kind="onnx",
        input_name=inp.name,
        input_shape=dims,
        layout=layout,
        size=size,
        channels=channels,
        dtype="float32",
        dynamic_batch=is_dynamic(dims[0]),
        output_name=out.name,
        classes=classes,
        task=task,
        outputs=outputs,
    )


def _onnx_dims(value: Any) -> list[Any]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]
