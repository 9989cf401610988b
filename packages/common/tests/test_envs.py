"""The env table (envs/<env>/env.toml): what it rejects, how venvs are reused, and that compose.yaml and the
Dockerfiles say the same as the table."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

from modelport.common import envs

ROOT = envs.checkout_root()
GOOD = """order = 10
requirements = ["requirements.txt"]
packages = ["common"]
image = "modelport/a:0.1.0"
services = ["convert-a"]
tests = ["packages/common/tests"]
report = true

[steps]
convert = [["convert", "a"]]
bench = ["a"]
"""
TOOLS = 'tests = ["pytest==9.2.0"]\nlint = ["ruff==0.17.6"]\nmypy = ["mypy==2.4.1"]\ndocker = ["docker==7.2.0"]\n'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The smallest checkout the table accepts: one env `a`, one package `common`."""
    (tmp_path / "packages" / "common").mkdir(parents=True)
    (tmp_path / "packages" / "common" / "pyproject.toml").write_text('[project]\nname = "modelport-common"\n')
    (tmp_path / "envs" / "a").mkdir(parents=True)
    (tmp_path / "envs" / "a" / "env.toml").write_text(GOOD)
    (tmp_path / "envs" / "a" / "requirements.txt").write_text("numpy==2.4.6\n")
    (tmp_path / "envs" / "tools.toml").write_text(TOOLS)
    return tmp_path


def test_the_checkouts_table_loads_in_order() -> None:
    table = envs.load(ROOT)
    assert list(table.envs)[0] == table.report_env == "tf-onnx"  # the others convert its ONNX
    assert [e.order for e in table.envs.values()] == sorted(e.order for e in table.envs.values())
    assert {p.name for p in (ROOT / "envs").iterdir() if p.is_dir()} == set(table.envs)
    assert "tensorrt" not in table.cpu_envs() and "openvino" in table.cpu_envs()


def test_a_minimal_table_loads(checkout: Path) -> None:
    table = envs.load(checkout)
    a = table.envs["a"]
    assert a.requirements == [checkout / "envs" / "a" / "requirements.txt"]
    assert a.commands("convert") == [["convert", "a"]] and a.commands("bench") == [["bench", "a"]]
    assert a.commands("rknn") == [] and table.with_step("bench") == ["a"] and table.tools["docker"] == ["docker==7.2.0"]


def test_may_fail_keys_get_the_flag_on_the_convert_and_bench_lines_that_name_them(checkout: Path) -> None:
    path = checkout / "envs" / "a" / "env.toml"
    path.write_text(
        GOOD.replace('convert = [["convert", "a"]]', 'convert = [["convert", "a", "a-int8"], ["fetch"]]').replace(
            'bench = ["a"]', 'bench = ["a", "a-int8"]\nanalyze = ["a-int8"]\nmay_fail = ["a-int8"]'
        )
    )
    a = envs.load(checkout).envs["a"]
    assert a.commands("convert") == [["convert", "a", "a-int8", "--may-fail", "a-int8"], ["fetch"]]
    assert a.commands("bench") == [["bench", "a", "a-int8", "--may-fail", "a-int8"]]
    assert a.commands("analyze") == [["analyze", "a-int8"]]  # only convert and bench take the flag
    assert "a-int8" in a.backend_names() and envs.load(checkout).may_fail() == ["a-int8"]

    path.write_text(GOOD.replace('bench = ["a"]', 'bench = ["a"]\nmay_fail = ["a-int8"]'))
    with pytest.raises(envs.TableError, match="steps.may_fail names 'a-int8', which no step of the same model runs"):
        envs.load(checkout)
    path.write_text(GOOD.replace('bench = ["a"]', 'bench = ["a"]\ndetect_may_fail = ["a"]'))  # a is the classifier's
    with pytest.raises(envs.TableError, match="steps.detect_may_fail names 'a'"):
        envs.load(checkout)


def test_packages_star_is_every_package_folder_so_a_new_backend_needs_no_edit(checkout: Path) -> None:
    (checkout / "envs" / "a" / "env.toml").write_text(GOOD.replace('packages = ["common"]', 'packages = ["*"]'))
    assert envs.load(checkout).envs["a"].packages == ["common"]
    (checkout / "packages" / "newbackend").mkdir()
    (checkout / "packages" / "newbackend" / "pyproject.toml").write_text('[project]\nname = "modelport-newbackend"\n')
    (checkout / "packages" / "notes").mkdir()  # a folder without a pyproject.toml is no package
    assert envs.load(checkout).envs["a"].packages == ["common", "newbackend"]
    assert envs.load(ROOT).envs["tf-onnx"].packages == envs.every_package(ROOT)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("order = 10", "order = 10\ncolour = 1"), "unknown key 'colour'"),
        (lambda t: t.replace('image = "modelport/a:0.1.0"\n', ""), "missing key 'image'"),
        (lambda t: t.replace("order = 10", 'order = "10"'), "order must be an integer, not '10'"),
        (lambda t: t.replace("order = 10", "order = true"), "order must be an integer, not True"),
        (lambda t: t.replace('packages = ["common"]', 'packages = ["common", "bench"]'), "package 'bench' has no packages/bench"),
        (
            lambda t: t.replace('["requirements.txt"]', '["requirements.txt", "requirements-x.txt"]'),
            "requirements file requirements-x.txt does not exist",
        ),
        (lambda t: t.replace('services = ["convert-a"]', "services = [1]"), "services must be a list of non-empty strings"),
        (lambda t: t + 'tune = ["a"]\n', "unknown step 'tune'"),
        (lambda t: t.replace('bench = ["a"]', "bench = []"), "steps.bench is empty"),
        (lambda t: t.replace('convert = [["convert", "a"]]', 'convert = ["convert a"]'), "steps.convert entries must be"),
        (lambda t: t.replace("order = 10", 'order = 10\nneeds = "gpu"'), "must say what it installs without it"),
        (lambda t: t.replace("order = 10", 'order = 10\nneeds = "npu"\nwithout_toolchain = ["x"]'), "needs must be one of"),
        (lambda t: t.replace("order = 10", 'order = 10\nwithout_toolchain = ["x"]'), "only used with needs"),
        (lambda t: t.replace("report = true", "report = false"), "exactly one env.toml must say report = true"),
        (lambda t: t.replace("order = 10", "order = = 10"), "Invalid"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_file(checkout: Path, edit: Callable[[str], str], problem: str) -> None:
    path = checkout / "envs" / "a" / "env.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(envs.TableError) as e:
        envs.load(checkout)
    message = str(e.value)
    assert "\n" not in message and problem in message
    assert message.startswith(str(path) if "report = true" not in problem else str(checkout / "envs"))


def test_what_two_envs_may_not_share_and_files_nothing_names(checkout: Path) -> None:
    (checkout / "envs" / "b").mkdir()
    (checkout / "envs" / "b" / "requirements.txt").write_text("numpy==2.4.6\n")
    with pytest.raises(envs.TableError, match=r"envs/b/env.toml: missing \(envs/b/ has a Dockerfile or requirements"):
        envs.load(checkout)
    (checkout / "envs" / "b" / "env.toml").write_text(
        GOOD.replace("order = 10", "order = 20").replace("modelport/a", "modelport/b").replace("report = true", "")
    )
    with pytest.raises(envs.TableError, match=r"envs/b/env.toml: service 'convert-a' is also envs/a/env.toml's"):
        envs.load(checkout)
    (checkout / "envs" / "b" / "env.toml").write_text(GOOD.replace("convert-a", "convert-b").replace("report = true", ""))
    with pytest.raises(envs.TableError, match=r"envs/b/env.toml: order 10 is also envs/a/env.toml's"):
        envs.load(checkout)
    (checkout / "envs" / "a" / "requirements-nodeps.txt").write_text("pnnx==1\n")
    with pytest.raises(envs.TableError, match=r"envs/a/env.toml: requirements-nodeps.txt is not in requirements"):
        envs.load(checkout)


def test_tools_must_define_exactly_the_tool_venvs(checkout: Path) -> None:
    (checkout / "envs" / "tools.toml").write_text(TOOLS.replace('mypy = ["mypy==2.4.1"]\n', ""))
    with pytest.raises(envs.TableError, match=r"tools.toml: must define exactly tests, lint, mypy, docker"):
        envs.load(checkout)


def _stamp(plan: envs.Plan) -> None:
    """What running plan.build leaves behind that plan() looks at: the venv's python and the stamp."""
    (plan.venv / "bin").mkdir(parents=True, exist_ok=True)
    (plan.venv / "bin" / "python").touch()
    plan.write_stamp()


def test_a_venv_is_reused_until_its_requirements_or_package_metadata_change(checkout: Path) -> None:
    table, venv = envs.load(checkout), checkout / ".nox" / "env-a"
    recipe = envs.env_recipe(table, "a", None)
    first = envs.plan(venv, recipe, "python3.11", ["pytest==9.2.0"])
    assert not first.reuse and first.build[0] == ["python3.11", "-m", "venv", "--clear", str(venv)]
    assert first.build[-1][-3:] == ["--no-deps", "-e", str(checkout / "packages" / "common")]
    _stamp(first)
    again = envs.plan(venv, recipe, "python3.11", ["pytest==9.2.0"])
    assert again.reuse and again.build == [] and again.extra == first.extra and again.extra[0][-1] == "pytest==9.2.0"

    (checkout / "envs" / "a" / "requirements.txt").write_text("numpy==2.4.5\n")
    assert not envs.plan(venv, recipe, "python3.11").reuse
    _stamp(envs.plan(venv, recipe, "python3.11"))
    (checkout / "packages" / "common" / "pyproject.toml").write_text('[project]\nname = "modelport-common"\nversion = "2"\n')
    assert not envs.plan(venv, recipe, "python3.11").reuse
    _stamp(envs.plan(venv, recipe, "python3.11"))
    assert envs.plan(venv, recipe, "python3.11").reuse
    (venv / "bin" / "python").unlink()  # a stamp without its interpreter is not a venv
    assert not envs.plan(venv, recipe, "python3.11").reuse


def test_without_its_hardware_an_env_installs_its_fallback_pins_and_nodeps_files_skip_deps(checkout: Path) -> None:
    env = checkout / "envs" / "a" / "env.toml"
    env.write_text(
        GOOD.replace("order = 10", 'order = 10\nneeds = "gpu"\nwithout_toolchain = ["onnx==1.23.2"]').replace(
            '["requirements.txt"]', '["requirements.txt", "requirements-nodeps.txt"]'
        )
    )
    (checkout / "envs" / "a" / "requirements-nodeps.txt").write_text("pnnx==20260409\n")
    table, venv = envs.load(checkout), checkout / ".nox" / "env-a"
    full, fallback = envs.env_recipe(table, "a", None), envs.env_recipe(table, "a", "no GPU")
    assert full.digest() != fallback.digest()
    installs = [cmd[cmd.index("-q") + 1 :] for cmd in envs.plan(venv, full, "python3.11").build[1:]]
    assert installs[1:3] == [
        ["-r", str(env.parent / "requirements.txt")],
        ["--no-deps", "-r", str(env.parent / "requirements-nodeps.txt")],
    ]
    installs = [cmd[cmd.index("-q") + 1 :] for cmd in envs.plan(venv, fallback, "python3.11").build[1:]]
    assert ["onnx==1.23.2"] in installs and not any("-r" in c for c in installs)


# --- the table vs compose.yaml and the Dockerfiles ----------------------------------------------


def test_compose_services_run_the_tables_images_and_steps() -> None:
    table = envs.load(ROOT)
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert set(compose) == {s for e in table.envs.values() for s in e.services}
    for env in table.envs.values():
        steps = [*env.commands("convert"), *env.commands("rknn"), *env.commands("bench")]
        if env.report:
            steps.append(["report"])
        commands = []
        for name in env.services:
            service = compose[name]
            assert service["image"] == env.image, name
            assert service["build"]["dockerfile"] == f"envs/{env.name}/Dockerfile", name
            assert service["environment"]["MODELPORT_ENV"] == env.name, name
            assert ("profiles" in service) == bool(env.needs), name  # `docker compose up` runs the CPU envs only
            commands.append(service["command"])
        assert sorted(commands) == sorted(steps), env.name


def dockerfile_installs(dockerfile: Path) -> tuple[list[tuple[str, bool]], list[str]]:
    """What its `pip install`s take: (file name, --no-deps) of each `-r envs/<env>/<file>`, and ./packages/<name>."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    requirements, packages = [], []
    for command in re.split(r"&&|;|\n", text):
        words = shlex.split(command, comments=True) if "pip" in command else []
        if "install" in words:
            requirements += [(Path(words[i + 1]).name, "--no-deps" in words) for i, w in enumerate(words) if w == "-r"]
            for w in words:
                if Path(w).parent.name == "packages":
                    # the shell expands ./packages/* to every package folder
                    packages += envs.every_package(ROOT) if Path(w).name == "*" else [Path(w).name]
    return requirements, packages


def test_every_dockerfile_installs_exactly_its_envs_requirement_files_and_packages() -> None:
    for env in envs.load(ROOT).envs.values():
        dockerfile = ROOT / "envs" / env.name / "Dockerfile"
        requirements, packages = dockerfile_installs(dockerfile)
        assert requirements == [(r.name, "nodeps" in r.name) for r in env.requirements], dockerfile
        assert packages == env.packages, dockerfile


def test_the_dockerfile_reader_sees_what_each_pip_install_takes(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "RUN pip install -r envs/x/requirements.txt \\\n    && pip install --no-deps -r envs/x/requirements-nodeps.txt\n"
        "# RUN pip install -r envs/x/requirements-old.txt\n"
        "COPY packages/common packages/common\nRUN pip install --no-deps ./packages/common \\\n && useradd x\n"
    )
    assert dockerfile_installs(dockerfile) == ([("requirements.txt", False), ("requirements-nodeps.txt", True)], ["common"])


def pins(lines: Iterable[str]) -> dict[str, str]:
    """``name==version`` lines (comments and other specifiers skipped) by lower-cased name."""
    found = [line.split("#")[0].strip().split("==") for line in lines]
    return {p[0].strip().lower(): p[1].strip() for p in found if len(p) == 2}


def test_pins_written_outside_requirement_files_match_them() -> None:
    """Fallback and mypy pins repeat an env's requirement files by necessity (no toolchain to resolve from):
    the skip path must run the versions the toolchain path runs, and mypy must check against them too."""
    table = envs.load(ROOT)

    def required(env: envs.Env) -> dict[str, str]:
        return {k: v for f in env.requirements for k, v in pins(f.read_text().splitlines()).items()}

    checked = 0
    for env in table.envs.values():
        own = required(env)
        for name, ver in pins(env.without_toolchain).items():
            assert own.get(name, ver) == ver, f"{env.name}: without_toolchain {name}=={ver}, requirements {own[name]}"
            checked += name in own
    report = required(table.envs[table.report_env])
    for name, ver in pins(table.tools["mypy"]).items():
        assert report.get(name, ver) == ver, f"tools.toml mypy {name}=={ver}, {table.report_env} requires {report[name]}"
        checked += name in report
    assert checked >= 10  # both lists are actually compared, not skipped by a parsing slip


def test_the_farm_takes_its_models_from_the_artifacts_folder_every_step_uses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ast

    from modelport.common.artifacts import ArtifactStore

    monkeypatch.setenv("MODELPORT_ARTIFACTS", str(tmp_path / "mine"))
    assert envs.artifacts_root() == ArtifactStore().root == tmp_path / "mine"
    monkeypatch.delenv("MODELPORT_ARTIFACTS")
    monkeypatch.chdir(tmp_path)
    assert envs.artifacts_root() == ArtifactStore().root == tmp_path / "artifacts"
    # noxfile.py cannot be imported here (no nox in the env venvs): its farm session is read instead.
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    farm = ast.unparse(next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "farm"))
    assert "envs.artifacts_root()" in farm and "'artifacts'" not in farm
