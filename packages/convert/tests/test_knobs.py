"""Each INT8 row with a search space: its convert target runs the search over its knobs, and the knobs
agree with the row's descriptor (key, the files bench reads, the runtime pair the variants are timed with)."""

from modelport.common.backends import backends
from modelport.convert.recover import Searched
from modelport.convert.registry import TARGETS, target_module
from modelport.runtime.knobs import configured_first
from modelport.runtime.registry import runtime_class


def searched() -> dict[str, Searched]:
    return {k: t for k in TARGETS if isinstance(t := target_module(k), Searched)}


def test_the_int8_rows_with_a_search_space_convert_through_it() -> None:
    assert {"onnx-int8", "ncnn-int8", "openvino-int8", "mnn-int8", "tensorrt-int8"} <= set(searched())
    assert all(backends()[k].precision == "int8" for k in searched())


def test_the_knobs_agree_with_their_descriptor() -> None:
    for key, target in searched().items():
        knobs, row = target.knobs, backends()[key]
        assert knobs.key == key, key
        runtime = runtime_class(key)
        assert dict(runtime.artifacts).items() <= knobs.outputs.items(), key  # bench reads the kept variant's files
        assert set(knobs.outputs) <= set(knobs.files) and all("{id}" in f for f in knobs.files.values()), key
        assert knobs.builder is target.converter, key
        if knobs.runtimes is not None:
            assert knobs.runtimes == (runtime, runtime_class(row.fp32_twin or "")), key


def test_the_configured_method_is_tried_first() -> None:
    assert configured_first("kl", ("minmax", "kl", "aciq")) == ["kl", "minmax", "aciq"]
    assert configured_first("other", ("minmax",)) == ["other", "minmax"]
