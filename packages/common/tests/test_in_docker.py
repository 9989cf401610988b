"""`--in-docker`: which mounts, env and user a step's container gets (no engine needed to check that)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelport.common import __version__, in_docker


def test_spec_mounts_every_input_at_its_host_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modelport.toml").write_text('[images]\neval = "photos"\n')
    (tmp_path / "photos").mkdir()
    model = data_dir / "models" / "mobilenet_v2_1.0_224.tflite"
    monkeypatch.setenv("MODELPORT_MODEL", str(model))
    spec = in_docker.container_spec("tf-onnx", ["convert", "onnx"], tmp_path / "artifacts")

    assert spec["image"] == f"modelport/tf-onnx:{__version__}"
    assert spec["command"] == ["convert", "onnx"]
    assert spec["user"] == f"{os.getuid()}:{os.getgid()}"
    assert spec["network_mode"] == "none"
    artifacts = str((tmp_path / "artifacts").resolve())
    assert spec["volumes"][artifacts] == {"bind": artifacts, "mode": "rw"}
    assert spec["environment"]["MODELPORT_ARTIFACTS"] == artifacts
    # env var wins, config paths are relative to the config file, all read-only at the same path
    assert spec["environment"]["MODELPORT_MODEL"] == str(model.resolve())
    assert spec["volumes"][str(model.resolve())]["mode"] == "ro"
    assert spec["volumes"][str(tmp_path / "photos")] == {"bind": str(tmp_path / "photos"), "mode": "ro"}
    assert spec["environment"]["MODELPORT_CONFIG"] == str(tmp_path / "modelport.toml")


def test_fetch_gets_a_network_only_when_nothing_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELPORT_FETCH_NETWORK", "host")
    assert in_docker.container_spec("tf-onnx", ["fetch"], tmp_path / "a")["network_mode"] == "host"
    monkeypatch.setenv("MODELPORT_MODEL", str(data_dir / "models" / "mobilenet_v2_1.0_224.tflite"))
    monkeypatch.setenv("MODELPORT_LABELS", str(data_dir / "models" / "labels.txt"))
    assert in_docker.container_spec("tf-onnx", ["fetch"], tmp_path / "a")["network_mode"] == "none"
