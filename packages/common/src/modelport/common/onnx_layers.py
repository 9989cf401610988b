"""The layers of ``onnx/model.onnx``: the one naming every backend's per-layer numbers are mapped to.

A layer is a compute node with the activation every INT8 toolchain fuses into it (Conv + Clip
is one ncnn ``Convolution``, one RKNN layer, one QDQ-quantized tensor): named by that head
node, in the ONNX file's (topological) node order. A backend that measures either the head's
output or the fused activation's output lands on the same layer.
"""

from __future__ import annotations

import re
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


def load(path: Path) -> OnnxGraph:
    import onnx

    return from_model(onnx.load(str(path), load_external_data=False))
