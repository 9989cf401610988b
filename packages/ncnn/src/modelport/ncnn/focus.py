"""ONNX rewrite before pnnx: a space-to-depth made of step-2 slices ("Focus") becomes a reshape.

pnnx drops ``Slice`` nodes with step 2 (``ignore Tensor.slice ... step=2``) and ncnn then
refuses the model (``layer Tensor.slice not exists or registered``); it maps ONNX
``SpaceToDepth`` with the wrong channel order. What it does convert exactly is
Reshape -> Transpose -> Reshape in pixel-unshuffle order (channel ``c*4 + dy*2 + dx``), which
becomes ncnn ``Reorg``. The slices concatenate the four phases in their own order
(``k*C + c``), so the rewrite permutes the input channels of the convolutions that read the
concatenation instead: the convolutions' outputs, and everything after them, are unchanged.

The pattern is matched structurally (any Concat on channels of four step-2 slice pairs of one
4-D tensor covering the four phases, read only by convolutions with constant weights), not by
node names; a graph without it is left as it was.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _Phase:
    """One step-2 slice along one spatial axis (2 = rows, 3 = columns) at offset 0 or 1."""

    data: str
    axis: int
    start: int


def rewrite_focus(model: Any, input_shape: tuple[int, ...]) -> int:
    """Rewrite every Focus block of ``model`` (an onnx.ModelProto, changed in place); returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    shapes = _shapes(model, input_shape)
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    graph_outputs = {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}

    new_nodes: dict[int, list[Any]] = {}  # by index in graph.node: protobuf hands out a new wrapper per access
    for index, concat in enumerate(graph.node):
        match = _match(concat, producer, consts, shapes)
        if match is None:
            continue
        src, order = match
        n, c, h, w = shapes[src]
        convs = readers[concat.output[0]]
        if concat.output[0] in graph_outputs or not convs or not all(_plain_conv(conv, inits, readers, c) for conv in convs):
            continue
        # Focus channel k*C + ch (k = the phase's place in the concat) is unshuffle channel ch*4 + dy*2 + dx.
        perm = np.empty(4 * c, dtype=np.int64)
        for k, (dy, dx) in enumerate(order):
            for ch in range(c):
                perm[ch * 4 + dy * 2 + dx] = k * c + ch
        for conv in convs:
            weight = numpy_helper.to_array(inits[conv.input[1]])
            inits[conv.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weight[:, perm]), conv.input[1]))
        prefix = f"{concat.output[0]}/unshuffle"
        six, four = f"{prefix}/shape6", f"{prefix}/shape4"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([n, c, h // 2, 2, w // 2, 2], np.int64), six),
                numpy_helper.from_array(np.array([n, 4 * c, h // 2, w // 2], np.int64), four),
            ]
        )
        new_nodes[index] = [
            helper.make_node("Reshape", [src, six], [f"{prefix}/split"], name=f"{prefix}/Reshape6"),
            helper.make_node(
                "Transpose", [f"{prefix}/split"], [f"{prefix}/moved"], name=f"{prefix}/Transpose", perm=[0, 1, 3, 5, 2, 4]
            ),
            helper.make_node("Reshape", [f"{prefix}/moved", four], [concat.output[0]], name=f"{prefix}/Reshape4"),
        ]
    if not new_nodes:
        return 0
    orphaned = {name for index in new_nodes for name in graph.node[index].input}
    kept: list[Any] = []
    for index, node in enumerate(graph.node):
        kept += new_nodes.get(index, [node])
    kept = _without_orphans(kept, orphaned, graph_outputs)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    for t in [t for t in graph.initializer if t.name in consts and t.name not in used]:
        graph.initializer.remove(t)  # the slices' starts/ends/axes/steps, read by nothing now
    onnx.checker.check_model(model)
    return len(new_nodes)


def _match(
    concat: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], shapes: dict[str, list[int]]
) -> tuple[str, list[tuple[int, int]]] | None:
    """(the sliced tensor, the (row, column) phase of each concat input) if ``concat`` is a Focus block."""
    if concat.op_type != "Concat" or len(concat.input) != 4:
        return None
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    if axis not in (1, -3):
        return None
    sources, order = set(), []
    for name in concat.input:
        outer = _phase(producer.get(name), consts, shapes)
        inner = _phase(producer.get(outer.data), consts, shapes) if outer else None
        if outer is None or inner is None or outer.axis == inner.axis:
            return None
        sources.add(inner.data)
        rows, cols = (outer, inner) if outer.axis == 2 else (inner, outer)
        order.append((rows.start, cols.start))
    if len(sources) != 1 or sorted(order) != [(0, 0), (0, 1), (1, 0), (1, 1)]:
        return None
    src = sources.pop()
    shape = shapes.get(src)
    if shape is None or len(shape) != 4 or any(d <= 0 for d in shape) or shape[2] % 2 or shape[3] % 2:
        return None
    return src, order


def _phase(node: Any, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> _Phase | None:
    """The node as a _Phase if it is a Slice with step 2 from offset 0/1 to the end along one spatial axis of a 4-D tensor."""
    if node is None or node.op_type != "Slice":
        return None
    # opset >= 10: starts, ends, axes, steps are constant inputs (before that there was no step)
    names = list(node.input[1:]) + [""] * (5 - len(node.input))
    if not names[0] or not names[1] or any(name and name not in consts for name in names):
        return None
    starts, ends = [int(v) for v in consts[names[0]].flat], [int(v) for v in consts[names[1]].flat]
    axes = [int(v) for v in consts[names[2]].flat] if names[2] else list(range(len(starts)))
    steps = [int(v) for v in consts[names[3]].flat] if names[3] else [1] * len(starts)
    rank = len(shapes.get(node.input[0], []))
    if rank != 4 or len(starts) != 1 or steps != [2] or starts[0] not in (0, 1):
        return None
    axis = axes[0] % rank
    if axis not in (2, 3) or ends[0] < shapes[node.input[0]][axis]:
        return None
    return _Phase(node.input[0], axis, starts[0])


def _plain_conv(node: Any, inits: dict[str, Any], readers: dict[str, list[Any]], channels: int) -> bool:
    """A Conv (group 1) reading the concat as its data input, with a weight nothing else reads."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if node.op_type != "Conv" or group != 1 or len(node.input) < 2 or node.input[1] not in inits:
        return False
    weight = inits[node.input[1]]
    return len(weight.dims) == 4 and weight.dims[1] == 4 * channels and len(readers[node.input[1]]) == 1


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def _shapes(model: Any, input_shape: tuple[int, ...]) -> dict[str, list[int]]:
    """Static shape of every tensor shape inference can tell, the (single) graph input fixed to ``input_shape``."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inits = {t.name for t in probe.graph.initializer}
    real_inputs = [i for i in probe.graph.input if i.name not in inits]
    if len(real_inputs) == 1:
        dims = real_inputs[0].type.tensor_type.shape.dim
        if len(dims) == len(input_shape):
            for dim, value in zip(dims, input_shape, strict=True):
                dim.Clear()
                dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(probe)
    out: dict[str, list[int]] = {}
    for info in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[info.name] = [d.dim_value for d in dims]
    return out


def _without_orphans(nodes: list[Any], orphaned: set[str], outputs: set[str]) -> list[Any]:
    """``nodes`` without the producers of ``orphaned`` tensors that nothing reads any more, and then theirs
    (the slices a rewritten concat read, their constants); every other node stays."""
    nodes = list(nodes)
    while orphaned:
        read = {name for node in nodes for name in node.input} | outputs
        dead = [n for n in nodes if n.output and all(o in orphaned and o not in read for o in n.output)]
        if not dead:
            break
        orphaned = {name for n in dead for name in n.input}
        nodes = [n for n in nodes if not any(n is d for d in dead)]
    return nodes
