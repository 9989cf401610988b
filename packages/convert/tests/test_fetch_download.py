"""`fetch --download` without the network: file:// archives and a refused loopback port stand in for the host."""

import hashlib
import io
import tarfile
from pathlib import Path

from conftest import error_line, run


def _tgz(path: Path, member: str, data: bytes) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _download_env(
    test_env: dict[str, str], tmp_path: Path, archive: Path, member_sha256: str
) -> tuple[dict[str, str], list[str]]:
    env = {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")}
    overrides = ["-o", f"model.url=file://{archive}", "-o", f"model.member_sha256={member_sha256}"]
    return env, overrides


def test_download_checks_the_member_against_its_pinned_hash(test_env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    model = (data_dir / "models" / "mobilenet_v2_1.0_224.tflite").read_bytes()
    archive = tmp_path / "mobilenet_v2_1.0_224.tgz"
    _tgz(archive, "./mobilenet_v2_1.0_224.tflite", model)
    env, sets = _download_env(test_env, tmp_path, archive, "0" * 64)
    proc = run(env, *sets, "fetch", "--download", "--labels", str(data_dir / "models" / "labels.txt"))
    assert proc.returncode != 0
    line = error_line(proc)
    assert f"file://{archive}" in line and "not the pinned [model] member_sha256" in line
    assert not (tmp_path / "art" / "source" / "model.tflite").exists()

    env, sets = _download_env(test_env, tmp_path, archive, hashlib.sha256(model).hexdigest())
    proc = run(env, *sets, "fetch", "--download", "--labels", str(data_dir / "models" / "labels.txt"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "art" / "source" / "model.tflite").read_bytes() == model


def test_offline_download_fails_in_one_line_naming_the_way_out(test_env: dict[str, str], tmp_path: Path) -> None:
    env = {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")}
    # Port 9 (discard) on loopback: refused at once, no traffic leaves the machine.
    proc = run(env, "-o", "model.url=http://127.0.0.1:9/mobilenet_v2_1.0_224.tgz", "-o", "model.download=true", "fetch")
    assert proc.returncode != 0
    line = error_line(proc)
    assert "download failed" in line and "shipped model needs no network" in line and "download = false" in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "art" / "source").exists() or not any((tmp_path / "art" / "source").glob("model*"))


def test_no_model_configured_is_one_line(test_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in test_env.items() if k != "MODELPORT_MODEL"} | {"MODELPORT_ARTIFACTS": str(tmp_path / "art")}
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    proc = run({**env, "MODELPORT_CONFIG": str(cfg)}, "fetch")
    assert proc.returncode != 0 and "no source model" in error_line(proc)
