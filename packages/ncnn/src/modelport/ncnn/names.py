"""ncnn blob and layer names -> the ONNX layers of ``onnx/model.onnx``.

pnnx renames everything (``convclip_3``, blob ``13``) and its ``model.pnnx.param`` keeps no
ONNX names, so the mapping follows the graph instead: from the input blob, each ncnn layer
(in file order) is matched to the ONNX node that consumes the ONNX tensors its bottoms map
to, of a compatible op type; a fused activation (ncnn ``9=`` activation_type) takes the
node's activation along, a ``Split`` maps every top to its bottom's tensor, and ONNX
shape-only ops that pnnx folds away (the Reshape before a 1x1 classifier Conv) are stepped
through. ncnn ``Swish`` is ONNX's SiLU written as ``x * Sigmoid(x)`` (a Sigmoid and a Mul: it maps to the
Mul); ``Reorg`` is the space-to-depth focus.py writes for pnnx (map it against that rewritten graph, as
analyze.py does). Convolutions are checked by weight count, so a wrong pairing stops the walk
(that layer and what depends on it stay unmapped) instead of mislabelling it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from modelport.common.onnx_layers import OnnxGraph, OnnxLayer

from .format import Layer, Model

if TYPE_CHECKING:
    import onnx

OPS = {
    "Convolution": {"Conv"},
    "ConvolutionDepthWise": {"Conv"},
    "InnerProduct": {"Gemm", "MatMul", "Conv"},
    "BinaryOp": {"Add", "Sub", "Mul", "Div"},
    "Eltwise": {"Add", "Mul", "Max"},
    "Pooling": {"AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean"},
    "ReLU": {"Relu", "LeakyRelu"},
    "Clip": {"Clip"},
    "Sigmoid": {"Sigmoid"},
    "HardSwish": {"HardSwish"},
    "Softmax": {"Softmax"},
    "Concat": {"Concat"},
    "Reshape": {"Reshape", "Flatten"},
    "Flatten": {"Flatten", "Reshape"},
    "Permute": {"Transpose"},
    "Padding": {"Pad"},
    "Interp": {"Resize", "Upsample"},
    "Reorg": {"Transpose"},  # focus.py's Reshape -> Transpose -> Reshape: the Reshapes are stepped through
}
# ONNX ops pnnx may fold away without an ncnn layer.
PASS_THROUGH = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
WEIGHTED = ("Convolution", "ConvolutionDepthWise", "InnerProduct")


@dataclass
class Mapping:
    layers: dict[str, OnnxLayer]  # ncnn layer name -> ONNX layer
    blobs: dict[str, str]  # ncnn blob -> ONNX tensor
    unmapped: list[str]  # ncnn layers (not Input/Split) with no ONNX layer

    def layer_of_blob(self, graph: OnnxGraph, blob: str) -> OnnxLayer | None:
        tensor = self.blobs.get(blob)
        return graph.layer_of(tensor) if tensor else None


def _weight_count(graph_model: onnx.ModelProto, node: Any) -> int | None:
    inits = {i.name: i for i in graph_model.graph.initializer}
    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    n = 1
    for d in inits[node.input[1]].dims:
        n *= d
    return n


def _consumer(graph: OnnxGraph, sources: list[str], ops: set[str], taken: set[str], fits: Callable[[Any], bool]) -> Any:
    """The ONNX node taking exactly ``sources`` (as activation inputs) with an op in ``ops`` that ``fits`` (the
    weight count), not ``taken`` by another ncnn layer (two convs reading one tensor, which pnnx may write in
    either order); steps through shape-only ops on a single source."""
    for _ in range(4):
        candidates = [
            n
            for n in graph.consumers.get(sources[0], [])
            if n.op_type in ops
            and n.output[0] not in taken
            and fits(n)
            and sorted(t for t in n.input if t and t not in graph.initializers) == sorted(sources)
        ]
        if candidates:
            return candidates[0]
        if len(sources) != 1:
            return None
        users = graph.consumers.get(sources[0], [])
        if len(users) != 1 or users[0].op_type not in PASS_THROUGH:
            return None
        sources = [users[0].output[0]]
    return None


def _silu(graph: OnnxGraph, source: str) -> Any:
    """The Mul of ``source * Sigmoid(source)`` (SiLU as exported from PyTorch), or None."""
    sigmoids = {n.output[0] for n in graph.consumers.get(source, []) if n.op_type == "Sigmoid"}
    return next(
        (
            n
            for n in graph.consumers.get(source, [])
            if n.op_type == "Mul" and len(n.input) == 2 and source in n.input and sigmoids.intersection(n.input)
        ),
        None,
    )


def map_model(ncnn: Model, graph: OnnxGraph, onnx_model: onnx.ModelProto) -> Mapping:
    blobs: dict[str, str] = {}
    layers: dict[str, OnnxLayer] = {}
    unmapped: list[str] = []
    taken: set[str] = set()  # outputs of the ONNX nodes already matched
    for la in ncnn.layers:
        if la.type == "Input":
            for t in la.tops:
                blobs[t] = graph.graph_input
            continue
        sources = [blobs.get(b) for b in la.bottoms]
        if la.type == "Split" and sources and sources[0]:
            for t in la.tops:
                blobs[t] = sources[0]
            continue
        known = [s for s in sources if s]
        node = None
        if len(known) == len(sources) == 1 and la.type == "Swish":
            node = _silu(graph, known[0])
        elif len(known) == len(sources):
            node = _consumer(graph, known, OPS.get(la.type, set()), taken, partial(_weights_agree, la, onnx_model=onnx_model))
        onnx_layer = graph.layer_of(node.output[0]) if node is not None else None
        if node is None or onnx_layer is None or not _weights_agree(la, node, onnx_model):
            unmapped.append(la.name)
            continue
        tensor = node.output[0]
        if la.type in WEIGHTED and la.pint(9) and len(onnx_layer.tensors) > 1:
            tensor = onnx_layer.output  # activation fused into the conv: its output is the ONNX activation's
        for t in la.tops:
            blobs[t] = tensor
        layers[la.name] = onnx_layer
        taken.add(node.output[0])
    return Mapping(layers, blobs, unmapped)


def _weights_agree(la: Layer, node: Any, onnx_model: onnx.ModelProto) -> bool:
    if la.type not in WEIGHTED:
        return True
    expected = _weight_count(onnx_model, node)
    return expected is None or expected == la.pint(6)
