"""A secondary measurement (extra thread counts, GPU-only time) that fails is a note beside the row, never its status."""

from modelport.bench.runner import secondary
from modelport.common.errors import ModelportError
from modelport.common.schema import BackendResult


def row() -> BackendResult:
    return BackendResult(key="ncnn-int8", backend="ncnn", precision="int8", name="NCNN INT8", env="ncnn")


def test_a_failed_secondary_measurement_is_a_note_and_the_row_stays_ok() -> None:
    result = row()

    def fails() -> dict[str, float]:
        raise RuntimeError("ncnn: create_extractor failed\nat threads 3")

    assert secondary(result, "extra timings", fails, dict[str, float]()) == {}
    assert result.status == "ok" and result.reason is None
    assert result.notes == ["extra timings not measured: RuntimeError: ncnn: create_extractor failed at threads 3"]


def test_a_modelport_error_is_its_own_line_and_a_success_adds_no_note() -> None:
    result = row()

    def refused() -> dict[str, float]:
        raise ModelportError("threads_3: model.param: not an ncnn param file")

    secondary(result, "extra timings", refused, dict[str, float]())
    assert secondary(result, "GPU time", lambda: {"gpu": 1}, dict[str, int]()) == {"gpu": 1}
    assert result.notes == ["extra timings not measured: threads_3: model.param: not an ncnn param file"]
