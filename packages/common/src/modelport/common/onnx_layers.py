"""The layers of ``onnx/model.onnx``: the one naming every backend's per-layer numbers are mapped to.

A layer is a compute node with the activation every INT8 toolchain fuses into it (Conv + Clip
is one ncnn ``Convolution``, one RKNN layer, one QDQ-quantized tensor): named by that head
node, in the ONNX file's (topological) node order. A backend that measures either the head's
output or the fused activation's output lands on the same layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

# Activations toolchains fold into the preceding conv / matmul / add.
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"})
# Layers that mix channels with learned weights: where a detector's head begins, walking back from its outputs.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Ops whose values come from their first input only, the others being shapes, indices or sizes: a Reshape's
# shape computed from a feature map (Shape -> Gather -> Concat) is not part of a head.
DATA_FIRST = frozenset({"Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "Squeeze", "Unsqueeze", "Gather"})
SHAPE_ONLY = frozenset({"Shape", "Size"})


@dataclass
class OnnxLayer:
    index: int  # position of the head node in the graph
    node: str  # head node's name (the layer's name in every analysis)
    op: str  # head op type, with "+Clip" etc. for a fused activation
    nodes: list[str]  # head + fused activation nodes (what ORT's nodes_to_exclude takes)
    tensors: list[str]  # their outputs, in order; the last one is the layer's output
    inputs: list[str] = field(default_factory=list)  # activation inputs of the head (no initializers)

    @property
    def output(self) -> str:
        return self.tensors[-1]


@dataclass
class OnnxGraph:
    layers: list[OnnxLayer]
    graph_input: str
    consumers: dict[str, list[Any]]  # tensor -> onnx NodeProto list[Any]
    producer: dict[str, object]  # tensor -> onnx NodeProto
    initializers: set[str]
    outputs: list[str] = field(default_factory=list)  # the graph's outputs
    macs: dict[str, int] = field(default_factory=dict)  # layer -> multiply-accumulates (layer_macs; {}: not counted)

    def layer_of(self, tensor: str) -> OnnxLayer | None:
        return self._by_tensor.get(tensor)

    def by_node(self, name: str) -> OnnxLayer | None:
        return self._by_node.get(name)

    def find(self, name: str) -> OnnxLayer | None:
        """The layer a toolchain's node name stands for: a node or tensor name of this graph, or one with the
        suffixes toolchains add to it (onnxruntime's ``_nchwc``/``_token_N``, OpenVINO's ``/WithoutBiases``)."""
        candidates = [name, re.sub(r"(_nchwc|_token_\d+)+$", "", name)]
        while "/" in candidates[-1]:
            candidates.append(candidates[-1].rsplit("/", 1)[0])
        for c in candidates:
            layer = self.by_node(c) or self.layer_of(c)
            if layer is not None:
                return layer
        return None

    def __post_init__(self) -> None:
        self._by_tensor = {t: la for la in self.layers for t in la.tensors}
        self._by_node = {n: la for la in self.layers for n in la.nodes}


def from_model(model: onnx.ModelProto) -> OnnxGraph:
    graph = model.graph
    inits = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list[Any]] = {}
    producer: dict[str, object] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
        for t in n.output:
            producer[t] = n
    layers, absorbed = [], set()
    for i, n in enumerate(graph.node):
        if n.op_type == "Constant" or (n.name or n.output[0]) in absorbed:
            continue
        nodes, tensors, ops = [n.name or n.output[0]], [n.output[0]], [n.op_type]
        users = consumers.get(n.output[0], [])
        if n.op_type not in FUSED_ACTIVATIONS and len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS:
            act = users[0]
            absorbed.add(act.name or act.output[0])  # unnamed nodes go by their output, as in nodes
            nodes.append(act.name or act.output[0])
            tensors.append(act.output[0])
            ops.append(act.op_type)
        layers.append(OnnxLayer(i, nodes[0], "+".join(ops), nodes, tensors, [t for t in n.input if t and t not in inits]))
    inputs = [i.name for i in graph.input if i.name not in inits]
    return OnnxGraph(layers, inputs[0] if inputs else "", consumers, producer, inits, [o.name for o in graph.output])


def head(graph: OnnxGraph) -> list[str]:
    """A detector's head, as layer names in graph order: every layer a model output is reached from without
    passing through another conv/gemm/matmul. That is each output's last compute layers (YOLOX's reg/obj/cls
    1x1 convs, an SSD's per-level regression and classification convs) and the decode path after them
    (their Sigmoid, Reshape, Transpose, Concat, Softmax, prior arithmetic), where boxes and scores of very
    different ranges meet in one tensor that a single INT8 scale serves badly."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = list(graph.outputs)
    while todo:
        tensor = todo.pop()
        node: Any = graph.producer.get(tensor)
        if node is None or tensor in seen:
            continue
        seen.add(tensor)
        if node.op_type in SHAPE_ONLY:
            continue
        layer = graph.by_node(node.name or node.output[0])
        if layer is not None:
            found.add(layer.node)
        if node.op_type not in COMPUTE_OPS:
            inputs = node.input[:1] if node.op_type in DATA_FIRST else node.input
            todo += [t for t in inputs if t and t not in graph.initializers]
    return [la.node for la in graph.layers if la.node in found]


def load(path: Path, macs: bool = False) -> OnnxGraph:
    """The layers of the ONNX file; ``macs``: with each layer's MACs (shape inference: the search's cost of float)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = from_model(model)
    if macs:
        graph.macs = layer_macs(model, graph)
    return graph


def neighbours(graph: OnnxGraph) -> dict[str, set[str]]:
    """Each layer's producers and consumers (layer names): where a tensor crosses from one layer to another,
    which is where an INT8 model puts a Q/DQ pair when one side runs in float and the other does not."""
    out: dict[str, set[str]] = {la.node: set() for la in graph.layers}
    for la in graph.layers:
        for t in la.inputs:
            src = graph.layer_of(t)
            if src is not None and src.node != la.node:
                out[la.node].add(src.node)
                out[src.node].add(la.node)
    return out


def regions(graph: OnnxGraph, layers: list[str] | set[str]) -> list[list[str]]:
    """``layers`` (names) as connected runs in the graph, each in graph order, the runs by their first layer: every
    run is one float island with Q/DQ pairs at its borders, so fewer runs of the same layers mean fewer
    conversions between INT8 and float."""
    near = neighbours(graph)
    order = {la.node: la.index for la in graph.layers}
    members = set(layers)
    todo = sorted((n for n in members if n in order), key=order.__getitem__)
    seen: set[str] = set()
    out = []
    for start in todo:
        if start in seen:
            continue
        run, stack = [], [start]
        seen.add(start)
        while stack:
            n = stack.pop()
            run.append(n)
            for m in near[n]:
                if m in members and m not in seen:
                    seen.add(m)
                    stack.append(m)
        out.append(sorted(run, key=order.__getitem__))
    return out


def close_gaps(
    graph: OnnxGraph,
    layers: list[str],
    fillable: set[str],
    max_gap: int,
    limit: int,
    in_float: Callable[[list[str]], list[str]] | None = None,
) -> list[str]:
    """``layers`` with the gaps between its runs filled: the fewest ``fillable`` layers (at most ``max_gap`` in a
    row) that join two runs, shortest gap first, while the total stays within ``limit``. A quantized layer
    between two float ones costs a Q and a DQ on each side; in float it costs none. ``in_float``: the layers
    a toolchain really runs in float for a set of float layers (default: those), whose runs are joined.
    Deterministic: ties go to the gap met first in graph order."""
    near = neighbours(graph)
    order = {la.node: la.index for la in graph.layers}
    chosen = list(layers)
    while len(chosen) < limit:
        runs = regions(graph, in_float(chosen) if in_float else chosen)
        if len(runs) < 2:
            break
        run_of = {n: i for i, run in enumerate(runs) for n in run}
        best: list[str] | None = None
        for i, run in enumerate(runs):
            # Breadth first from the run through fillable layers, neighbours in graph order: the first other
            # run reached is the shortest gap from this one.
            parent: dict[str, str | None] = dict.fromkeys(run)
            frontier = list(run)
            for depth in range(max_gap + 1):
                found = None
                following: list[str] = []
                for n in frontier:
                    for m in sorted(near[n], key=order.__getitem__):
                        if m in parent:
                            continue
                        if run_of.get(m, i) != i:
                            found = n
                            break
                        if m in fillable and m not in run_of and depth < max_gap:
                            parent[m] = n
                            following.append(m)
                    if found:
                        break
                if found:
                    gap = []
                    at: str | None = found
                    while at is not None and at not in run_of:
                        gap.append(at)
                        at = parent[at]
                    if best is None or len(gap) < len(best):
                        best = gap
                    break
                frontier = following
        if best is None or len(chosen) + len(best) > limit:
            break
        # From the run outwards, only as far as joining takes: a toolchain's in_float may float a layer's
        # consumers with it, which then close the rest of the gap.
        for layer in reversed(best):
            chosen.append(layer)
            if len(regions(graph, in_float(chosen) if in_float else chosen)) < len(runs):
                break
    return chosen


def layer_macs(model: onnx.ModelProto, graph: OnnxGraph) -> dict[str, int]:
    """Multiply-accumulates per layer at batch 1, from ONNX shape inference: a conv or matmul's output elements
    times the inputs each one sums (its weights per output channel); any other layer one per output element.
    A layer whose shape the inference cannot tell counts its weights."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph the inference rejects (custom ops, odd opsets) still runs: its layers count by weights
        inferred = model
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    nodes = {n.name or n.output[0]: n for n in model.graph.node}

    def elements(dims: list[int] | None) -> int:
        out = 1
        for d in (dims or [1])[1:]:  # the batch dimension aside
            out *= max(d, 1)
        return out

    macs: dict[str, int] = {}
    for la in graph.layers:
        node = nodes[la.node]
        out_shape = shapes.get(node.output[0])
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type in ("Conv", "ConvTranspose") and w:
            per_output = 1
            for d in w[1:]:
                per_output *= d
            macs[la.node] = elements(out_shape) * per_output if out_shape else _product(w)
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            k = (a[-1] if node.op_type == "MatMul" or not _attr(node, "transA") else a[-2]) if a else 0
            macs[la.node] = elements(out_shape) * k if out_shape and k else _product(w or [])
        else:
            macs[la.node] = elements(out_shape) if out_shape else 0
    return macs


def _product(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out if dims else 0


def _attr(node: Any, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 0)


def float_share(macs: Mapping[str, int], layers: list[str] | set[str]) -> float | None:
    """The share of the model's MACs that ``layers`` run (what stays at float speed); None without MACs."""
    total = sum(macs.values())
    return round(sum(macs.get(n, 0) for n in set(layers)) / total, 4) if total else None
