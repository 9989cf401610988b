"""A Caffe source's contract (entry point group ``modelport.sources``): the input from the .prototxt,
the outputs from one OpenCV run of the network on zeros (OpenCV infers every blob's shape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.common.contract import Contract
from modelport.common.errors import InputError
from modelport.convert.inspect import image_layout, outputs_task, spatial

from .files import input_of, weights_for
from .runtime import cv_message, load_net


def inspect_caffe(path: Path, shown: Path) -> Contract:
    import cv2

    name, dims = input_of(path)
    if len(dims) != 4 or dims[0] != 1:
        raise InputError(f"input {name!r} {dims} is not a batch-1 NCHW image", shown)
    layout = image_layout(list(dims), shown, None)
    if layout != "NCHW":
        raise InputError(f"input {name!r} {dims} is not NCHW with 1 or 3 channels (Caffe blobs are NCHW)", shown)
    net = load_net(path, weights_for(path))
    names = list(net.getUnconnectedOutLayersNames())
    net.setInput(np.zeros(dims, np.float32))
    try:
        outs = net.forward(names)
    except cv2.error as e:
        raise InputError(f"OpenCV cannot run this Caffe network on a {dims} input: {cv_message(e)}", shown) from None
    task, classes, outputs = outputs_task([(n, [int(d) for d in o.shape]) for n, o in zip(names, outs, strict=True)], shown)
    channels, size = spatial(list(dims), layout)
    return Contract(
        kind="caffe",
        input_name=name,
        input_shape=list(dims),
        layout=layout,
        size=size,
        channels=channels,
        dtype="float32",
        output_name=names[0],
        classes=classes,
        task=task,
        outputs=outputs,
    )
