"""The data the repo ships: every file checksummed, and the default config points at it."""

import hashlib
from pathlib import Path

import pytest

from modelport.common.config import load_config

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "data"


def test_every_shipped_file_matches_sha256sums() -> None:
    listed = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        listed[rel] = digest
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


def test_default_config_runs_on_the_shipped_data(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELPORT_MODEL", "MODELPORT_LABELS", "MODELPORT_IMAGES", "MODELPORT_CALIBRATION"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(ROOT / "modelport.toml")
    assert cfg.model.download is False
    for path in (cfg.model.path, cfg.model.labels, cfg.images.eval, cfg.images.calibration):
        assert path is not None and path.exists() and path.is_relative_to(DATA), path
    assert len(list(cfg.images.eval.glob("*.jpg"))) == 12
    # The official download is pinned by the member's published hash, and the labels' too.
    assert cfg.model.member_sha256 == "9f3bc29e38e90842a852bfed957dbf5e36f2d97a91dd17736b1e5c0aca8d3303"
    assert cfg.model.labels_sha256 == "536feacc519de3d418de26b2effb4d75694a8c4c0063e36499a46fa8061e2da9"


def test_nothing_reads_a_folder_beside_the_repo() -> None:
    """No default, test or CI file names ../shared (data now ships in data/)."""
    hits = []
    for p in ROOT.rglob("*"):
        if (
            p.is_file()
            and p.suffix in {".py", ".toml", ".yaml", ".yml", ".cfg", ""}
            and ".nox" not in p.parts
            and ".git" not in p.parts
            and "data" not in p.relative_to(ROOT).parts[:1]
            and p != Path(__file__)
        ):
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if "../shared" in text or 'parent / "shared"' in text:
                hits.append(str(p.relative_to(ROOT)))
    assert hits == []


def test_the_shipped_calibration_set_is_big_enough_and_apart_from_every_eval_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELPORT_IMAGES", "MODELPORT_CALIBRATION"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(ROOT / "modelport.toml")
    calibration = [p for p in cfg.images.calibration.iterdir() if p.is_file()]
    assert len(calibration) >= cfg.images.calibration_limit >= cfg.images.calibration_min
    evaluated = [p for p in (*cfg.images.eval.iterdir(), *(DATA / "images" / "extra").iterdir()) if p.is_file()]

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert not {digest(p) for p in calibration} & {digest(p) for p in evaluated}
    # Nor derived from one (a crop of an eval photo is the eval photo to a quantizer): no shared stem.
    eval_stems = {p.stem for p in evaluated}
    assert not [p.name for p in calibration if any(p.stem == s or p.stem.startswith(s + "_") for s in eval_stems)]
