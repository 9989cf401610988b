"""A Caffe model is two files: the network (.prototxt, text) and its weights (.caffemodel, binary).

``[model] path`` names the .prototxt; the weights are the .caffemodel of the same name beside it.
Both are untrusted: every problem is one InputError naming the file at fault.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelport.common.errors import InputError

WEIGHTS_SUFFIX = ".caffemodel"
# A prototxt is text; anything larger than this is not a network description.
MAX_PROTOTXT_BYTES = 16 << 20


def weights_for(prototxt: Path) -> Path:
    """The .caffemodel beside ``prototxt`` (same name), or an InputError saying what is missing."""
    weights = prototxt.with_suffix(WEIGHTS_SUFFIX)
    if not weights.is_file() or weights.stat().st_size == 0:
        raise InputError(
            f"a Caffe network needs its weights: {weights.name} beside it (missing or empty); "
            "modelport does not run a Caffe model without weights",
            prototxt,
        )
    return weights


def read_prototxt(prototxt: Path) -> str:
    if not prototxt.is_file() or prototxt.stat().st_size == 0:
        raise InputError("Caffe .prototxt missing or empty", prototxt)
    if prototxt.stat().st_size > MAX_PROTOTXT_BYTES:
        raise InputError(f"not a Caffe network description: larger than {MAX_PROTOTXT_BYTES >> 20} MB", prototxt)
    try:
        return prototxt.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a Caffe network description: not UTF-8 text", prototxt) from None


_INPUT_DIM = re.compile(r"^\s*input_dim\s*:\s*(\d+)", re.M)
_INPUT_NAME = re.compile(r'^\s*input\s*:\s*"([^"]+)"', re.M)
_SHAPE_BLOCK = re.compile(r"(?:input_shape|shape)\s*\{([^}]*)\}")
_DIM = re.compile(r"dim\s*:\s*(\d+)")
_LAYER = re.compile(r"\blayer\s*\{")
_INPUT_LAYER_TYPE = re.compile(r'\btype\s*:\s*"Input"')
_TOP = re.compile(r'\btop\s*:\s*"([^"]+)"')


def input_of(prototxt: Path) -> tuple[str, list[int]]:
    """The network's one input blob and its declared shape (``input:`` + ``input_shape``/``input_dim``,
    or an ``Input`` layer), read from the text: OpenCV does not say what a Caffe net expects."""
    text = read_prototxt(prototxt)
    names = _INPUT_NAME.findall(text)
    if names:
        dims = [int(d) for d in _INPUT_DIM.findall(text)]
        block = _SHAPE_BLOCK.search(text)
        if not dims and block:
            dims = [int(d) for d in _DIM.findall(block.group(1))]
        if len(names) != 1:
            raise InputError(f"a network with {len(names)} inputs ({', '.join(names)}): modelport feeds one image", prototxt)
        if not dims:
            raise InputError(f"input {names[0]!r} has no input_shape / input_dim", prototxt)
        return names[0], dims
    inputs = []
    starts = [m.start() for m in _LAYER.finditer(text)] + [len(text)]
    for begin, end in zip(starts, starts[1:], strict=False):
        layer = text[begin:end]
        if _INPUT_LAYER_TYPE.search(layer):
            top, block = _TOP.search(layer), _SHAPE_BLOCK.search(layer)
            if top is None or block is None:
                raise InputError("an Input layer without top or shape", prototxt)
            inputs.append((top.group(1), [int(d) for d in _DIM.findall(block.group(1))]))
    if len(inputs) != 1:
        raise InputError(
            f"a Caffe network with {len(inputs)} inputs: modelport feeds one image (an Input layer or input: + input_shape)",
            prototxt,
        )
    return inputs[0]
