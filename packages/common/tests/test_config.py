import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import cli, error_line
from modelport.common.config import Config, load_config
from modelport.common.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "modelport.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.input.size == (224, 224) and cfg.input.mean == (127.5,) * 3
    assert cfg.source is None


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    cfg = load_config(write(tmp_path / "sub", '[images]\neval = "imgs"\n'))
    assert cfg.images.eval == (tmp_path / "sub" / "imgs").resolve()


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'bench.rusn'.*did you mean 'bench.runs'"):
        load_config(write(tmp_path, "[bench]\nrusn = 3\n"))


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'benchh'.*'bench'"):
        load_config(write(tmp_path, "[benchh]\nruns = 3\n"))


def test_mistyped_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bench.runs"):
        load_config(write(tmp_path, '[bench]\nruns = "many"\n'))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[bench\n")
    with pytest.raises(ConfigError, match=str(p)):
        load_config(p)


def test_overrides_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_IMAGES", str(tmp_path))
    cfg = load_config(write(tmp_path, "[bench]\nruns = 3\n"), ["bench.runs=7", "input.crop=0.875", ("tflite.threads", 1)])
    assert cfg.bench.runs == 7 and cfg.input.crop == 0.875 and cfg.tflite.threads == 1
    assert cfg.images.eval == tmp_path.resolve()


def test_override_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'bench.run'"):
        load_config(write(tmp_path, ""), ["bench.run=3"])


def test_a_utf8_bom_is_stripped(tmp_path: Path) -> None:
    p = tmp_path / "modelport.toml"
    p.write_bytes(b"\xef\xbb\xbf[bench]\nruns = 7\n")
    assert load_config(p).bench.runs == 7


def test_an_override_error_names_the_override_not_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[bench]\nruns = 7\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["bench.runs=abc"])
    assert str(e.value).startswith("override -o bench.runs=abc: bench.runs") and str(p) not in str(e.value)
    with pytest.raises(ConfigError, match="'runs' is a value, not a section"):
        load_config(p, ["bench.runs.x=2"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("ncnn.extra_threads=[-1]", r"ncnn.extra_threads\[0\]: must be >= 1 \(got -1\)"),
        ("ncnn.extra_threads=[2, 0]", r"ncnn.extra_threads\[1\]: must be >= 1 \(got 0\)"),
        ("onnxruntime.intra_op_threads=0", r"onnxruntime.intra_op_threads: must be >= 1 \(got 0\)"),
        ("onnxruntime.inter_op_threads=0", r"onnxruntime.inter_op_threads: must be >= 1 \(got 0\)"),
    ],
)
def test_a_thread_count_is_threads_used(tmp_path: Path, override: str, message: str) -> None:
    """Every *threads setting counts threads run: 0 (onnxruntime's "pick for me") and below are refused at load."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, ""), [override])


def test_nan_and_inf_are_refused_naming_the_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[input]\nmean = [nan, 127.5, 127.5]\n")
    with pytest.raises(ConfigError, match=r"input.mean\[0\]: must be a finite number \(got nan\)") as e:
        load_config(p)
    assert str(e.value).startswith(str(p))
    with pytest.raises(ConfigError, match=r"quantization.recover_minutes: must be a finite number \(got inf\)"):
        load_config(write(tmp_path, ""), ["quantization.recover_minutes=inf"])


def numeric_settings(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, type]]:
    """(key, int or float) for every number in the config; a list or tuple item as key[0]."""

    def bare(t: Any) -> Any:
        return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t

    for name, field in model.model_fields.items():
        key, annotation = f"{prefix}{name}", bare(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from numeric_settings(annotation, key + ".")
            continue
        args = [bare(a) for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        if typing.get_origin(annotation) in (list, tuple):
            key, args = f"{key}[0]", args[:1]
        if len(args) == 1 and args[0] in (int, float):
            yield key, args[0]


def test_every_number_in_the_config_is_checked(tmp_path: Path) -> None:
    """Each numeric setting, now and added later, refuses nan/inf (floats) and an absurd value, naming its key.

    Only [input] mean may be any finite number: a normalisation offset has no natural bound.
    """
    settings = dict(numeric_settings())
    assert len(settings) > 30 and settings["ncnn.extra_threads[0]"] is int and settings["input.mean[0]"] is float
    defaults = Config()
    for key, kind in settings.items():
        dotted, _, index = key.partition("[")

        def override(value: object, dotted: str = dotted, index: str = index) -> tuple[str, object]:
            if not index:
                return (dotted, value)
            section, name = dotted.split(".")
            return (dotted, [value, *list(getattr(getattr(defaults, section), name))[1:]])

        escaped = key.replace("[", r"\[").replace("]", r"\]")
        if kind is float:
            for bad in (float("nan"), float("inf")):
                with pytest.raises(ConfigError, match=rf"{escaped}: must be a finite number"):
                    load_config(write(tmp_path, ""), [override(bad)])
        if key != "input.mean[0]":
            with pytest.raises(ConfigError, match=rf"{escaped}: must be"):
                load_config(write(tmp_path, ""), [override(-(10**9))])


def test_a_bad_number_is_one_error_line_before_anything_runs(tiny: dict[str, str]) -> None:
    """As `bench ncnn` once died of SIGFPE on a negative thread count: now refused at load, in one line."""
    proc = cli(tiny, "fetch", "-o", "ncnn.extra_threads=[-1]")
    assert proc.returncode == 2
    assert error_line(proc) == "error: override -o ncnn.extra_threads=[-1]: ncnn.extra_threads[0]: must be >= 1 (got -1)"
    art = Path(tiny["MODELPORT_ARTIFACTS"])
    assert not art.exists() or not any(art.iterdir())


@pytest.mark.parametrize(
    "line, error",
    [
        ("min_speedup = 0", "quantization.min_speedup: must be > 0"),
        ("min_speedup = -1.3", "quantization.min_speedup: must be > 0"),
        ("min_speedup = inf", "quantization.min_speedup: must be a finite number"),
        ("min_speedup = nan", "quantization.min_speedup: must be a finite number"),
        ('min_speedup = "fast"', "quantization.min_speedup: Input should be a valid number"),
        ('speed_floor = "warn"', "quantization.speed_floor: Input should be 'report' or 'fail'"),
    ],
)
def test_the_int8_speed_floor_is_a_finite_positive_factor_and_a_known_choice(tmp_path: Path, line: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(write(tmp_path, f"[quantization]\n{line}\n"))


def test_the_int8_speed_floor_defaults_to_reported_1_3x_and_is_not_a_quantizer_setting(tmp_path: Path) -> None:
    q = load_config(write(tmp_path, "")).quantization
    assert (q.min_speedup, q.speed_floor) == (1.3, "report")
    q = load_config(write(tmp_path, '[quantization]\nmin_speedup = 1.0\nspeed_floor = "fail"\n')).quantization
    assert (q.min_speedup, q.speed_floor) == (1.0, "fail")
    assert not {"min_speedup", "speed_floor"} & set(q.quantizer_settings())  # not part of the INT8 model's identity
