"""The RKNN INT8 search's methods beyond the algorithm (``normal+layer``, ``normal+auto_hybrid``): each builds through
the real toolkit on a tiny classifier built here, is simulated against onnxruntime's reference and recorded with
what it changed (the toolkit's own float16 layers counted as float layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_context
from modelport.common.context import StepContext

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with rknn-toolkit2 (rknn env)")

from rknn_testing import require_toolkit  # noqa: E402

from modelport.common.contract import Contract  # noqa: E402
from modelport.common.errors import InputError  # noqa: E402
from modelport.common.preprocess import to_tensor  # noqa: E402
from modelport.common.reference import REFERENCE, image_ids  # noqa: E402
from modelport.rknn import recover  # noqa: E402
from modelport.runtime.run import prepared_images  # noqa: E402
from tiny_models import tiny_images, tiny_onnx  # noqa: E402

pytestmark = [
    pytest.mark.rknn,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

CONFIG = """[model]
name = "tiny"

[input]
mean = [0, 0, 0]
std = [255, 255, 255]
layout = "NCHW"

[images]
eval = "{images}"
calibration = "{images}"
headline = "img0.png"
calibration_min = 1

[rknn]
auto_hybrid_cos_thresh = {thresh}
"""


def tiny_classifier(tmp_path: Path, thresh: float) -> StepContext:
    """An artifacts folder as fetch, `convert reference` and `convert onnx` leave it for a tiny classifier
    (Conv -> ReLU -> pool -> Gemm -> Softmax, 16x16), its reference from onnxruntime."""
    art = tmp_path / "art"
    for folder in ("source", "onnx"):
        (art / folder).mkdir(parents=True)
    onnx_path = tiny_onnx(art / "onnx" / "model.onnx", size=(16, 16), batch=1)
    contract = Contract(
        kind="onnx",
        input_name="image",
        input_shape=[1, 3, 16, 16],
        layout="NCHW",
        size=(16, 16),
        channels=3,
        dtype="float32",
        output_name="probs",
        classes=10,
    )
    (art / "source" / "contract.json").write_text(contract.dump())
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(images=tiny_images(tmp_path / "images", n=3, size=(16, 16)), thresh=thresh))
    ctx = make_context({"MODELPORT_CONFIG": str(config), "MODELPORT_ARTIFACTS": str(art)})
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = [
        session.run(None, {"image": to_tensor(arr, ctx.config.input, "NCHW", "float32")})[0].reshape(-1)
        for arr in prepared_images(ctx)
    ]
    with ctx.store.produce(REFERENCE, inputs={"onnx": onnx_path}, tool="onnxruntime", tool_version=ort.__version__) as job:
        np.save(job.tmp(), np.stack(outputs), allow_pickle=False)
        job.record(preprocessing=ctx.config.input.signature, images=image_ids(ctx.eval_images))
    return ctx


def test_per_tensor_scales_build_all_int8_and_are_recorded(tmp_path: Path) -> None:
    require_toolkit()
    ctx = tiny_classifier(tmp_path, 0.98)
    knobs = recover.RknnKnobs(ctx, force=False, verbose=False)
    assert knobs.methods == ["normal", "kl_divergence", "normal+layer", "normal+auto_hybrid", "normal+proposal", "mmse"]
    wanted = StepContext(
        config_path=ctx.config_path, artifacts=ctx.artifacts, overrides=[("quantization.recover_methods", ["normal+layer"])]
    )
    assert recover.RknnKnobs(wanted, force=False, verbose=False).methods == ["normal", "normal+layer"]  # selectable by name
    v = knobs.build("normal+layer", [])
    manifest = ctx.store.read_manifest(v.files["model"])
    assert manifest is not None and manifest["options"]["quantized_method"] == "layer"  # what the method changed
    assert manifest["options"]["quantized_algorithm"] == "normal"
    assert v.float_layers == [] and manifest["extra"]["float16_tensors"] == []  # every layer INT8
    assert v.agreement is not None and v.agreement["images"] == 3 and ctx.store.path(v.files["eval"]).is_file()


def test_auto_hybrid_records_the_layers_the_toolkit_floated_as_float_layers(tmp_path: Path) -> None:
    """At threshold 1.0 no layer's INT8 cosine is good enough: the toolkit floats every layer it quantizes, and the
    variant counts them, by their ONNX names, as the search's float layers."""
    require_toolkit()
    ctx = tiny_classifier(tmp_path, 1.0)
    knobs = recover.RknnKnobs(ctx, force=False, verbose=False)
    v = knobs.build("normal+auto_hybrid", [])
    manifest = ctx.store.read_manifest(v.files["model"])
    assert manifest is not None and manifest["options"]["auto_hybrid_cos_thresh"] == 1.0
    extra = manifest["extra"]
    assert extra["float16_tensors"] and extra["toolchain_float_layers"] == v.float_layers, extra
    nodes = {la.node for la in knobs.graph.layers}
    assert set(v.float_layers) <= nodes and "conv" in v.float_layers  # the first convolution, by its ONNX name
    assert v.id == "normal+auto_hybrid" and v.method == "normal+auto_hybrid"
    # the float layers it chose are no longer quantized layers: the float stage would not pick them again
    assert not set(v.float_layers) & knobs.quantized_layers(v)
    assert v.agreement is not None and v.agreement["images"] == 3
    # all in float16 the simulator agrees with onnxruntime about as the FP16 build does
    assert v.agreement["cosine_min"] > 0.999, v.agreement


def test_the_proposal_is_recorded_as_float_layers_and_grows_with_more(tmp_path: Path) -> None:
    """``+proposal``: hybrid step 1's own float16 proposal, its layers the variant's float layers (recorded even when,
    as from this tiny model's 3 images, it proposes none); asked for one more layer, the proposal and that layer are
    both float16."""
    require_toolkit()
    ctx = tiny_classifier(tmp_path, 0.98)
    knobs = recover.RknnKnobs(ctx, force=False, verbose=False)
    proposed = knobs.proposed("normal+proposal")
    v = knobs.build("normal+proposal", [])
    manifest = ctx.store.read_manifest(v.files["model"])
    assert manifest is not None and manifest["options"]["proposed"] == proposed
    extra = manifest["extra"]
    assert extra["float16_tensors"] == [t for t in extra["float16_tensors"] if t in proposed]
    assert extra["toolchain_float_layers"] == v.float_layers and v.agreement is not None
    extra_layer = next(la for la in sorted(knobs.quantized_layers(v)) if la not in v.float_layers)
    more = knobs.build("normal+proposal", [*v.float_layers, extra_layer])
    tensors = (ctx.store.read_manifest(more.files["model"]) or {})["extra"]["float16_tensors"]
    assert set(extra["float16_tensors"]) < set(tensors)  # the proposal's, and the asked-for layer's
    assert extra_layer in more.float_layers and more.agreement is not None


def test_an_unknown_method_is_one_line() -> None:
    with pytest.raises(InputError, match=r"RKNN INT8 method 'normal\+perchannel': unknown option \+perchannel"):
        recover.parse_method("normal+perchannel")
    with pytest.raises(InputError, match=r"algorithm 'gdq' is not one of normal, kl_divergence, mmse"):
        recover.parse_method("gdq")
    assert recover.plain_method("mmse+layer+auto_hybrid") == "mmse+layer" == recover.plain_method("mmse+proposal+layer")
    with pytest.raises(InputError, match=r"two float16 choices"):
        recover.parse_method("normal+auto_hybrid+proposal")
