"""Which INT8 model `modelport analyze` reads: the step's model, or the one kept below the floors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.common.artifacts import ArtifactStore
from modelport.convert.analyze import Target, int8_files


def nothing(*_: object) -> dict[str, Any]:
    return {}


TARGET = Target("x-int8", "json", {"model": "x/model.int8.bin", "table": "x/model.int8.table"}, {"model": "x/model.bin"}, nothing)


def test_analyze_reads_the_int8_model_or_else_the_one_kept_below_the_floors(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    (tmp_path / "x").mkdir()
    below = {"model": tmp_path / "x/model.int8.below-floor.bin", "table": tmp_path / "x/model.int8.below-floor.table"}
    wanted = {"model": tmp_path / "x/model.int8.bin", "table": tmp_path / "x/model.int8.table"}
    # neither: the step's own names, so the analysis fails naming the file the INT8 step writes
    assert int8_files(store, TARGET) == wanted
    for p in below.values():
        p.write_bytes(b"0")
    assert int8_files(store, TARGET) == below
    wanted["model"].write_bytes(b"1")  # half a model is no model: still the below-floor pair
    assert int8_files(store, TARGET) == below
    wanted["table"].write_bytes(b"1")
    assert int8_files(store, TARGET) == wanted
