"""Every JSON file modelport writes is strict JSON: a non-finite number is refused, naming where it is."""

import json
import math
from pathlib import Path

import pytest

from modelport.common.artifacts import ArtifactStore
from modelport.common.errors import ModelportError
from modelport.common.strict_json import json_text


def test_json_text_is_json_dumps_for_finite_data() -> None:
    data = {"a": [1, 2.5, None, "é"], "b": {"c": True}}
    assert json_text(data) == json.dumps(data, indent=2) + "\n"
    assert json_text(data, indent=None, sort_keys=True) == json.dumps(data, sort_keys=True) + "\n"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_naming_its_place(bad: float) -> None:
    with pytest.raises(ModelportError, match=rf"refusing to write {bad} at \$\.runs\[1\]\.ms: "):
        json_text({"runs": [{"ms": 1.0}, {"ms": bad}]})


def produce(store: ArtifactStore, src: Path, minutes: float, content: str) -> None:
    with store.produce("x/out.bin", inputs={"src": src}, tool="t", tool_version="1", options={"minutes": minutes}) as job:
        if not job.cached:
            job.tmp().write_text(content)


def test_a_manifest_with_a_non_finite_option_replaces_nothing(tmp_path: Path) -> None:
    """A step's options land in its manifest: an infinite one is refused before the earlier pair is touched."""
    store = ArtifactStore(tmp_path / "art")
    (tmp_path / "in.txt").write_text("v1")
    produce(store, tmp_path / "in.txt", 1.0, "good")
    manifest = store.manifest_path(store.path("x/out.bin"))
    before = manifest.read_bytes()
    with pytest.raises(ModelportError, match=r"refusing to write inf at \$\.options\.minutes"):
        produce(store, tmp_path / "in.txt", math.inf, "new")
    assert store.path("x/out.bin").read_text() == "good" and manifest.read_bytes() == before
