"""A float ONNX from what the converters make of a full-integer TFLite model.

tf2onnx ``--dequantize`` keeps the integer input (Cast -> Sub(zero point) -> Mul(scale));
tflite2onnx keeps every tensor's quantization as QuantizeLinear/DequantizeLinear pairs.
The toolchains that quantize themselves (onnxruntime, ncnn, RKNN, TensorRT) need a float
model with a float input that takes the real values, (pixel - mean) / std with the
mean/std of modelport.common.contract.float_twin. So: the integer input's dequantizing
prologue becomes a float input, Q->DQ pairs go (the float tensor passes through), a
lone DequantizeLinear of an integer initializer becomes a float initializer, and an
output that is quantized is taken before its QuantizeLinear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

PROLOGUE = ("Cast", "Sub", "Mul", "DequantizeLinear")


def _consumers(graph: Any, name: str) -> list[Any]:
    return [n for n in graph.node if name in n.input]


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for n in graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
    for o in graph.output:
        if o.name == old:
            o.name = new


def float_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (onnx.ModelProto) without quantization, in place; returns it."""
    from onnx import TensorProto, numpy_helper

    g = model.graph
    init = {t.name: t for t in g.initializer}
    drop: list[Any] = []

    # An integer input: its dequantizing chain's result becomes the float input.
    for inp in g.input:
        if inp.name in init or inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            continue
        tensor, chain = inp.name, []
        while len(users := _consumers(g, tensor)) == 1 and users[0].op_type in PROLOGUE:
            chain.append(users[0])
            tensor = users[0].output[0]
        if not chain:
            continue
        drop += chain
        _rename_uses(g, tensor, inp.name)
        inp.type.tensor_type.elem_type = TensorProto.FLOAT

    # Q -> DQ pairs: the float tensor passes straight through.
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n not in drop]:
        dqs = _consumers(g, q.output[0])
        if dqs and all(d.op_type == "DequantizeLinear" for d in dqs):
            for d in dqs:
                _rename_uses(g, d.output[0], q.input[0])
            drop += [q, *dqs]

    # A lone DequantizeLinear of an integer initializer: fold it into a float initializer.
    for d in [n for n in g.node if n.op_type == "DequantizeLinear" and n not in drop]:
        if d.input[0] not in init:
            continue
        x = numpy_helper.to_array(init[d.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(init[d.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(init[d.input[2]]).astype(np.float32) if len(d.input) > 2 and d.input[2] else 0.0
        axis = next((a.i for a in d.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and x.ndim > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        g.initializer.append(numpy_helper.from_array(((x - zero) * scale).astype(np.float32), d.output[0]))
        drop.append(d)

    # A quantized output: take the float tensor before its QuantizeLinear.
    for out in g.output:
        producer = next((n for n in g.node if out.name in n.output and n not in drop), None)
        if producer is not None and producer.op_type == "QuantizeLinear":
            drop.append(producer)
            out.name = producer.input[0]
        out.type.tensor_type.elem_type = TensorProto.FLOAT

    keep = [n for n in g.node if n not in drop]
    del g.node[:]
    g.node.extend(keep)
    used = {x for n in g.node for x in n.input}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    del g.value_info[:]  # stale integer types; shape inference recomputes them
    return model
