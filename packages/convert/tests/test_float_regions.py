"""What float layers cost (common/onnx_layers.py): their regions (connected runs in the graph, each one island of
Q/DQ pairs) and their share of the MACs, on small ONNX graphs built here; the search closing the gaps between
regions and preferring fewer of them (common/recovery.py); and onnxruntime's own QDQ build leaving one
dequantize in front of each float region. No speed is measured or asserted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.common import onnx_layers, recovery
from modelport.common.agreement import compare
from modelport.common.config import AccuracyConfig
from modelport.common.onnx_layers import OnnxGraph, close_gaps, float_share, regions
from modelport.common.recovery import Search, Variant, choose, judge

CHANNELS, SIZE = 4, 8


def conv_chain(path: Path, n: int, *, residual: bool = False) -> Path:
    """image -> c0 -> c1 -> ... (Conv 3x3 + Relu each, nodes named by their outputs); ``residual``: an Add of
    c0's and c2's outputs between c2 and c3 (MobileNetV2's block shape)."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "image"
    for i in range(n):
        inits += [
            numpy_helper.from_array(rng.normal(0, 0.3, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32), f"w{i}"),
            numpy_helper.from_array(rng.normal(0, 0.1, (CHANNELS,)).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"c{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"r{i}"),
        ]
        x = f"r{i}"
        if residual and i == 2:
            nodes.append(helper.make_node("Add", ["r0", x], ["add"], name="add"))
            x = "add"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def chain(tmp_path: Path) -> OnnxGraph:
    return onnx_layers.load(conv_chain(tmp_path / "chain.onnx", 6), macs=True)


@pytest.fixture
def block(tmp_path: Path) -> OnnxGraph:
    return onnx_layers.load(conv_chain(tmp_path / "block.onnx", 5, residual=True), macs=True)


def test_regions_are_connected_runs_of_a_chain(chain: OnnxGraph) -> None:
    assert [la.node for la in chain.layers] == [f"c{i}" for i in range(6)]  # each Relu fused into its conv
    assert regions(chain, []) == []
    assert regions(chain, ["c1", "c2"]) == [["c1", "c2"]]
    assert regions(chain, ["c4", "c1", "c3"]) == [["c1"], ["c3", "c4"]]
    assert len(regions(chain, ["c0", "c2", "c4"])) == 3


def test_a_residual_joins_what_its_add_touches(block: OnnxGraph) -> None:
    assert [la.node for la in block.layers] == ["c0", "c1", "c2", "add", "c3", "c4"]
    assert regions(block, ["c0", "add"]) == [["c0", "add"]]  # the skip connection: c0 feeds the Add directly
    assert len(regions(block, ["c1", "c3"])) == 2


def test_macs_count_each_conv_and_the_share_in_float(chain: OnnxGraph) -> None:
    per_conv = CHANNELS * SIZE * SIZE * CHANNELS * 3 * 3  # output elements x the inputs each one sums
    assert chain.macs == {f"c{i}": per_conv for i in range(6)}
    assert float_share(chain.macs, ["c0", "c3"]) == round(2 / 6, 4)
    assert float_share({}, ["c0"]) is None


def test_closing_a_gap_leaves_fewer_regions(chain: OnnxGraph, block: OnnxGraph) -> None:
    every = {la.node for la in chain.layers}
    closed = close_gaps(chain, ["c1", "c3"], every - {"c1", "c3"}, max_gap=2, limit=10)
    assert closed == ["c1", "c3", "c2"] and len(regions(chain, closed)) == 1
    # A gap longer than max_gap stays open; one that is not fillable (not quantized) too; so does one over the limit.
    assert close_gaps(chain, ["c0", "c4"], every - {"c0", "c4"}, max_gap=2, limit=10) == ["c0", "c4"]
    assert close_gaps(chain, ["c1", "c3"], {"c0", "c4"}, max_gap=2, limit=10) == ["c1", "c3"]
    assert close_gaps(chain, ["c1", "c3"], every, max_gap=2, limit=2) == ["c1", "c3"]
    # Three regions, two gaps: both closed, one run.
    three = close_gaps(chain, ["c0", "c2", "c5"], every, max_gap=2, limit=10)
    assert sorted(three) == [f"c{i}" for i in range(6)] and len(regions(chain, three)) == 1
    # Through a residual block: the same answer whichever order the layers come in.
    fill = {la.node for la in block.layers} - {"c1", "c3"}
    a, b = close_gaps(block, ["c1", "c3"], fill, 2, 10), close_gaps(block, ["c3", "c1"], fill, 2, 10)
    assert len(regions(block, a)) == 1 and len(a) == 4 and sorted(a) == sorted(b)


# -- onnxruntime's QDQ build: one DequantizeLinear feeds each float region of a chain from the INT8 side


def qdq(source: Path, out: Path, nodes: list[str]) -> onnx.ModelProto:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed in this env")
    from tiny_models import ort_qdq

    return onnx.load(str(ort_qdq(source, out, nodes)))


def float_entries(model: onnx.ModelProto, float_nodes: set[str]) -> int:
    """Activation DequantizeLinear -> float node edges: where the INT8 side hands a tensor to a float region."""
    producer = {o: n for n in model.graph.node for o in n.output}
    edges = 0
    for n in model.graph.node:
        if n.name not in float_nodes:
            continue
        for t in n.input:
            src = producer.get(t)
            if src is not None and src.op_type == "DequantizeLinear" and src.input[0] in producer:
                edges += 1  # its input is a QuantizeLinear's output: an activation, not a weight
    return edges


def test_onnxruntime_leaves_one_dequantize_per_float_region(tmp_path: Path, chain: OnnxGraph) -> None:
    """The float layers as the ONNX INT8 knobs exclude them (each layer's nodes and its consumers:
    ``excluded_nodes``), counted on what they run in float (``float_run``)."""
    from modelport.convert.qdq import excluded_nodes, float_run

    source = conv_chain(tmp_path / "chain.onnx", 6)
    assert float_run(chain, ["c1", "c4"]) == ["c1", "c2", "c4", "c5"]
    assert len(regions(chain, float_run(chain, ["c1", "c3"]))) == 1  # c1's consumer c2 closes that gap itself
    scattered = ["c1", "c5"]  # two regions, neither at the graph's input
    fill = {la.node for la in chain.layers} - set(scattered)
    closed = close_gaps(chain, scattered, fill, 2, 10, lambda layers: float_run(chain, layers))
    assert closed == ["c1", "c5", "c3"]  # c3's consumer c4 is floated with it: one layer closes a gap of two
    for layers, name, expect in ((scattered, "scattered", 2), (closed, "closed", 1)):
        nodes = excluded_nodes(source, layers)
        model = qdq(source, tmp_path / f"{name}.onnx", nodes)
        assert len(regions(chain, float_run(chain, layers))) == expect
        assert float_entries(model, set(nodes)) == expect, name


# -- the search: gaps closed after bisection, fewer regions preferred, the greedy step's ties


REFERENCE = np.random.default_rng(0).normal(size=(8, 50)).astype(np.float32)


class ChainBackend:
    """A backend over ``graph``: a variant's error is small once ``needed`` are all in float, else it falls
    with the number of float layers only (so layers help alike); the ranking puts float layers with gaps."""

    key, display, float_layers = "toy-int8", "toy INT8", cast(list[str], [])

    def __init__(self, graph: OnnxGraph, ranked: list[str], needed: set[str]) -> None:
        self.graph, self.ranked, self.needed = graph, ranked, needed
        self.methods = ["a"]

    def build(self, method: str, float_layers: list[str]) -> Variant:
        noise = 0.01 if self.needed and self.needed <= set(float_layers) else 0.4 / (1 + len(float_layers))
        out = REFERENCE + noise * np.random.default_rng(100 + len(float_layers)).normal(size=REFERENCE.shape)
        a = compare(out, REFERENCE, [f"img{i}" for i in range(len(REFERENCE))])
        return Variant(recovery.variant_id(method, float_layers), method, list(float_layers), {"toy": "x"}, recovery.brief(a))

    def worst_layers(self, variant: Variant) -> list[str]:
        return list(self.ranked)

    def quantized_layers(self, variant: Variant) -> set[str]:
        return {la.node for la in self.graph.layers} - set(variant.float_layers)

    def head_layers(self, variant: Variant) -> list[str]:
        return []

    def layer_graph(self) -> OnnxGraph | None:
        return self.graph

    def in_float(self, float_layers: list[str]) -> list[str]:
        return list(float_layers)

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        return contextlib.nullcontext(None)


def floors(cosine_min: float) -> AccuracyConfig:
    return AccuracyConfig(int8_top1_min=0.0, int8_cosine_mean_min=0.0, int8_cosine_min=cosine_min)


def timed(v: Variant, rounds: list[float]) -> Variant:
    v.rounds_ms, v.latency_ms = rounds, min(rounds)
    return v


def test_the_search_closes_the_gap_of_the_passing_set_and_costs_every_variant(chain: OnnxGraph) -> None:
    b = ChainBackend(chain, ["c1", "c3", "c5", "c0", "c2", "c4"], needed={"c1", "c3"})
    tried = Search(b, floors(0.99), budget_s=600, max_float_layers=6).run()
    by_layers = {tuple(v.float_layers): v for v in tried}
    scattered, joined = by_layers[("c1", "c3")], by_layers[("c1", "c3", "c2")]
    assert scattered.passes and scattered.stage == "float" and scattered.regions == 2
    assert joined.passes and joined.stage == "regions" and joined.regions == 1
    assert joined.float_share == 0.5 and scattered.float_share == round(2 / 6, 4)
    assert all(v.regions is not None for v in tried) and tried[0].regions == 0 and tried[0].float_share == 0.0
    # Untimed (a simulator): the float share plus REGION_SHARE per region decides. Two of six equal layers in two
    # regions (33% + 4%) cost less than three in one (50% + 2%); a region costing more than a sixth of the model does not.
    assert choose(tried) is scattered
    assert recovery.REGION_SHARE < 1 / 6


def test_timing_decides_when_it_separates_and_fewer_regions_when_it_does_not(chain: OnnxGraph) -> None:
    b = ChainBackend(chain, [], needed={"c1", "c3"})
    scattered = judge(b.build("a", ["c1", "c3"]), floors(0.99))
    joined = judge(b.build("a", ["c1", "c3", "c2"]), floors(0.99))
    scattered.regions, joined.regions = 2, 1
    # 2% apart in every round: not separated, the single region is kept even though its best round is slower.
    timed(scattered, [2.00, 2.10, 2.05, 2.00, 2.02])
    timed(joined, [2.04, 2.14, 2.09, 2.04, 2.06])
    assert choose([scattered, joined]) is joined and choose([joined, scattered]) is joined
    # 1.5x in every round: the measured speed decides.
    timed(joined, [3.0, 3.15, 3.1, 3.0, 3.05])
    assert choose([scattered, joined]) is scattered and choose([joined, scattered]) is scattered


def test_greedy_prefers_a_layer_that_joins_a_float_region_when_layers_help_alike(chain: OnnxGraph) -> None:
    b = ChainBackend(chain, ["c0", "c3", "c5", "c1", "c2", "c4"], needed=set())  # nothing reaches the floors
    tried = Search(b, floors(1.0), budget_s=600, max_float_layers=6).run()
    greedy = [v for v in tried if v.stage == "greedy"]
    pairs = {tuple(v.float_layers[:2]) for v in greedy if len(v.float_layers) == 3}
    # Every pair helps alike (the error depends on the count only): the one adjacent to c0, not the next ranked (c3).
    assert pairs == {("c0", "c1")}


def test_a_search_without_a_graph_counts_nothing(chain: OnnxGraph) -> None:
    class NoGraph(ChainBackend):
        def layer_graph(self) -> OnnxGraph | None:
            return None

    tried = Search(NoGraph(chain, ["c1", "c3"], {"c1", "c3"}), floors(0.99), 600, 6).run()
    assert tried[0].regions == 0 and tried[0].float_share == 0.0  # no float layers: nothing to count on a graph
    assert all(v.regions is None and v.float_share is None for v in tried[1:])
    assert not any(v.stage == "regions" for v in tried)


def test_a_passing_configured_variant_reads_no_graph(chain: OnnxGraph) -> None:
    class Counting(ChainBackend):
        reads = 0

        def layer_graph(self) -> OnnxGraph | None:
            self.reads += 1
            return self.graph

    b = Counting(chain, ["c1"], set())
    tried = Search(b, floors(0.0), 600, 6).run()
    assert len(tried) == 1 and tried[0].passes and (tried[0].regions, tried[0].float_share, b.reads) == (0, 0.0, 0)
    Search(b, floors(0.99), 600, 6).run()
    assert b.reads == 1  # a search that floats layers reads it once
