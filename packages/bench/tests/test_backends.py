"""The backend descriptors agree with the runtimes and targets they name, and everything derived from them."""

import pytest

from modelport.bench import int8_report, registry
from modelport.common.backends import backends, catalogue, floors_of, rank
from modelport.convert.registry import TARGETS, target_module
from modelport.runtime.registry import RUNTIMES, runtime_class


@pytest.mark.parametrize("key", [k for k, b in backends().items() if b.runtime])
def test_runtime_class_matches_its_descriptor(key: str) -> None:
    b, cls = backends()[key], runtime_class(key)
    assert (cls.key, cls.display, cls.precision) == (b.key, b.display, b.precision)
    assert cls.unavailable_reason() is None or isinstance(cls.unavailable_reason(), str)


@pytest.mark.parametrize("key", [k for k, b in backends().items() if b.batch_twin])
def test_batch_twin_takes_batches_of_the_same_backend(key: str) -> None:
    twin = registry.batch_class(key)
    assert twin.key == key and twin.max_batch > 1


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_resolves(name: str) -> None:
    from modelport.convert.base import Converter

    t = target_module(name)
    assert isinstance(t, Converter)  # the toolchain check, cache, verification and record are the base's
    reason = t.unavailable_reason()
    assert isinstance(reason, str) if reason is not None else isinstance(t.tool_version(), str)


def test_derived_tables() -> None:
    keys = list(backends())
    assert keys[:2] == ["tflite", "onnx-source"]  # the source rows lead the report
    assert all(t in keys for t in int8_report.TWINS.values())
    assert all(backends()[k].floors == "int8" for k in int8_report.TWINS)
    assert set(registry.DEPTH_KEYS) <= set(RUNTIMES)
    assert rank("no-such-backend") > max(rank(k) for k in keys)
    assert floors_of("rknn-int8-hybrid") == "int8" and floors_of("unknown-int8", "int8") == "int8"
    assert floors_of("unknown", "fp16") == "float"
    assert catalogue()["ncnn-int8"]["env"] == "ncnn"


def test_analyses_come_from_the_descriptors_and_each_env_runs_its_own() -> None:
    from modelport.common import envs
    from modelport.common.layer_analysis import TARGETS as ANALYSES
    from modelport.convert.analyze import Target, targets

    named = {k: b for k, b in backends().items() if b.analysis}
    assert ANALYSES == tuple(named) and all(b.floors == "int8" for b in named.values())
    table = envs.load()
    for env in table.envs.values():  # `nox -s analyze` runs each env's part: every analysis exactly once
        assert env.steps.get("analyze", []) == [k for k, b in named.items() if b.env == env.name], env.name
    here = targets()  # rknn-int8 is analysed by the rknn package's own command, in its env: not a Target
    assert "rknn-int8" not in here and {"onnx-int8", "ncnn-int8", "tensorrt-int8"} <= set(here)
    assert all(isinstance(t, Target) and t.key == k for k, t in here.items())
