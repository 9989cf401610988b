import pytest

from modelport.common.config import load_config
from modelport.common.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "modelport.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.input.size == (224, 224) and cfg.input.mean == (127.5,) * 3
    assert cfg.source is None


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg = load_config(write(tmp_path / "sub", '[images]\neval = "imgs"\n'))
    assert cfg.images.eval == (tmp_path / "sub" / "imgs").resolve()


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'bench.rusn'.*did you mean 'bench.runs'"):
        load_config(write(tmp_path, "[bench]\nrusn = 3\n"))


def test_unknown_section_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'benchh'.*'bench'"):
        load_config(write(tmp_path, "[benchh]\nruns = 3\n"))


def test_mistyped_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"bench.runs"):
        load_config(write(tmp_path, '[bench]\nruns = "many"\n'))


def test_invalid_toml_names_the_file(tmp_path):
    p = write(tmp_path, "[bench\n")
    with pytest.raises(ConfigError, match=str(p)):
        load_config(p)


def test_overrides_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_IMAGES", str(tmp_path))
    cfg = load_config(write(tmp_path, "[bench]\nruns = 3\n"), ["bench.runs=7", "input.crop=0.875", ("tflite.threads", 1)])
    assert cfg.bench.runs == 7 and cfg.input.crop == 0.875 and cfg.tflite.threads == 1
    assert cfg.images.eval == tmp_path.resolve()


def test_override_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'bench.run'"):
        load_config(write(tmp_path, ""), ["bench.run=3"])


def test_a_utf8_bom_is_stripped(tmp_path):
    p = tmp_path / "modelport.toml"
    p.write_bytes(b"\xef\xbb\xbf[bench]\nruns = 7\n")
    assert load_config(p).bench.runs == 7


def test_an_override_error_names_the_override_not_the_file(tmp_path):
    p = write(tmp_path, "[bench]\nruns = 7\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["bench.runs=abc"])
    assert str(e.value).startswith("override -o bench.runs=abc: bench.runs") and str(p) not in str(e.value)
    with pytest.raises(ConfigError, match="'runs' is a value, not a section"):
        load_config(p, ["bench.runs.x=2"])
