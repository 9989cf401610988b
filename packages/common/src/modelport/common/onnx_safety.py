"""Checks on an ONNX file before any toolchain reads it: parseable, and external data confined.

An ONNX tensor may live in an external file named by a path inside the model; a
crafted model can point that path at any file on the machine (``../../etc/shadow``).
Every external-data path must resolve inside the model's own folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError


def check_onnx(path: Path) -> None:
    """Raise InputError naming ``path`` if it is not a readable ONNX model or its external data escapes."""
    import onnx  # lazy: only envs that read ONNX have it
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError("ONNX model missing or empty", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable ONNX model (corrupt or truncated): {type(e).__name__}", path) from None
    if not model.graph.node:
        raise InputError("ONNX model has no graph nodes (wrong format under a .onnx name?)", path)
    root = path.parent.resolve()
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise InputError(f"external data of tensor {tensor.name!r} points outside the model folder: {location!r}", path)


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)
