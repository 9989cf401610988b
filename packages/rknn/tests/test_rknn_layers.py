"""RKNN INT8 on the real model: accuracy_analysis mapped to the ONNX layer names, and a hybrid recovery variant."""

from __future__ import annotations

import json

import onnx
import pytest

from conftest import make_context
from modelport.common.context import StepContext

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")

from rknn_testing import copy_inputs, require_toolkit, upstream  # noqa: E402

pytestmark = [
    pytest.mark.rknn,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def ctx(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> StepContext:
    require_toolkit()
    art = copy_inputs(upstream(test_env), tmp_path_factory.mktemp("rknn-layers"))
    return make_context({**test_env, "MODELPORT_ARTIFACTS": str(art)})


def test_analysis_is_named_by_the_onnx_model(ctx: StepContext) -> None:
    from modelport.rknn import layers

    data = layers.run(ctx)
    nodes = {n.name for n in onnx.load(str(ctx.store.path("onnx/model.onnx"))).graph.node}
    assert len(data["layers"]) >= 60 and all(r["node"] in nodes for r in data["layers"])
    assert data["mapping"]["unmapped"] == ["Reshape_sw"]  # the toolkit's own softmax; everything else by name
    assert all("single_cosine_min" in r and r["images"] == 1 for r in data["layers"])
    # The default build met the floors: no search, the record says so.
    record = json.loads(ctx.store.path("recover/rknn-int8.json").read_text())
    assert not record["searched"] and record["kept"] == "normal" and not record["below_floors"]


def test_hybrid_variant_keeps_the_named_layer_in_float16(ctx: StepContext) -> None:
    from modelport.common.recovery import Variant
    from modelport.rknn.recover import RknnKnobs

    b = RknnKnobs(ctx, force=False, verbose=False)
    quantized = b.quantized_layers(Variant("normal", "normal", [], {}))  # from the toolkit's own step-1 cfg
    worst = json.loads(ctx.store.path("analysis/rknn-int8.json").read_text())["layers"]
    assert len(quantized) >= 50 and "MobilenetV2/Predictions/Reshape_1" not in quantized  # a float16 Softmax
    layer = min((r for r in worst if r["node"] in quantized), key=lambda r: r["own_sqnr_db"])["node"]
    v = b.build("normal", [layer])
    manifest = ctx.store.read_manifest(v.files["model"])
    layer_tensors = b.graph.by_node(layer)
    assert manifest is not None and layer_tensors is not None and v.agreement is not None
    assert manifest["extra"]["float16_tensors"], manifest["extra"]  # the layer's tensors went into the hybrid cfg
    assert set(manifest["extra"]["float16_tensors"]) <= set(layer_tensors.tensors)
    assert v.agreement["images"] == 12 and v.agreement["top1"] >= 0.9
    assert ctx.store.path(v.files["eval"]).is_file()
