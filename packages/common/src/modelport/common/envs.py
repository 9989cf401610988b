"""The env table (envs/<env>/env.toml) and the virtualenvs built from it.

Standard library only: noxfile.py and .ci/ import it with packages/common/src on
sys.path (nox's interpreter and CI's bare python3.11 have no modelport installed).
Nothing here runs pip: `plan()` says whether a venv can be reused and which commands
would (re)build it; the caller runs them.

An env.toml holds what one env is:

    order = 10                       # position in every session list (tf-onnx first: the others use its ONNX)
    requirements = ["requirements.txt"]  # envs/<env>/ files, in install order (its Dockerfile's order)
    packages = ["common", "bench"]   # packages/<name> installed with --no-deps -e; ["*"]: every packages/*/
    image = "modelport/ncnn:0.1.0"   # the tag compose.yaml builds from envs/<env>/Dockerfile
    services = ["convert-ncnn", ...] # the compose.yaml services running that image
    tests = [...]                    # pytest arguments (globs expanded by Env.pytest_args)
    needs = "gpu"                    # optional: hardware without which the toolchain cannot be installed
    without_toolchain = [...]        # with needs: pins installed instead of the toolchain when it is missing
    report = true                    # optional, exactly one env: runs report / init / bundle export
    [steps]                          # the modelport command lines each nox session runs here
    convert = [["convert", "ncnn"]]  # convert, rknn, depth_convert: lists of command lines
    bench = ["ncnn"]                 # bench, analyze, depth: backend keys
    detect_convert = [...]           # detect_convert, detect_bench: the default detector's, in its own folder
    may_fail = ["mnn-int8"]          # keys whose failure is a row with its reason, not a failed job (--may-fail)

A requirements file named *nodeps* is installed with --no-deps (wheels whose declared
dependencies are wrong for us: pnnx pulls CUDA torch, ...).
envs/tools.toml pins the venvs that carry no toolchain (test tools, lint, the Docker SDK).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAMP = ".modelport-stamp"
NEEDS = {"gpu"}
# detect_convert / detect_bench: the same for the default detector (DETECTOR), in its own artifacts folder
COMMAND_LISTS = ("convert", "rknn", "depth_convert", "detect_convert")  # steps holding command lines
KEY_LISTS = ("bench", "analyze", "depth", "detect_bench")  # steps holding backend keys
# Keys a step may fail on without failing the job: a row known to miss its floors here (an INT8 build of a model
# whose defaults fall short) is reported with its reason; every other key's failure still fails the session.
MAY_FAIL = ("may_fail", "detect_may_fail")
TOLERANT = ("convert", "bench")  # the commands that take --may-fail
DETECTOR = "yolox_nano.toml"  # the default detector's config, at the checkout's root
TOOLS = ("tests", "lint", "mypy", "docker")


def step_keys(step: str, value: list[Any]) -> set[str]:
    """The backend or target names one [steps] entry names: a command line's arguments but its flags, or its keys."""
    if step in COMMAND_LISTS:
        return {a for line in value for a in line[1:] if not a.startswith("-")}
    return set(value)


def every_package(root: Path) -> list[str]:
    """Every folder under packages/ with a pyproject.toml, by name."""
    return sorted(p.parent.name for p in (root / "packages").glob("*/pyproject.toml"))


def source_roots(root: Path) -> list[str]:
    """Every package's ``src/`` (relative to ``root``): mypy's bases for the ``modelport`` namespace, which
    `nox -s lint` passes as MYPYPATH, so a new package is type-checked without an edit to pyproject.toml."""
    return [f"packages/{name}/src" for name in every_package(root)]


class TableError(ValueError):
    """An env.toml or tools.toml that cannot be used; str() is one line naming the file."""


@dataclass(frozen=True)
class Env:
    name: str
    order: int
    packages: list[str]
    image: str
    services: list[str]
    tests: list[str]
    requirements: list[Path]
    steps: dict[str, list[Any]] = field(default_factory=dict)
    needs: str | None = None
    without_toolchain: list[str] = field(default_factory=list)
    report: bool = False

    def commands(self, step: str) -> list[list[str]]:
        """The modelport command lines this step runs here (none if the env has no such step), each with
        ``--may-fail KEY`` for the keys of its may_fail list (detect_may_fail for the detector's) it names."""
        value = self.steps.get(step, [])
        if step in COMMAND_LISTS:
            lines = [list(line) for line in value]
        else:
            lines = [[step.removeprefix("detect_"), *value]] if value else []
        tolerated = self.steps.get("detect_may_fail" if step.startswith("detect_") else "may_fail", [])
        return [
            [*line, *(a for k in tolerated if k in line[1:] for a in ("--may-fail", k))] if line[0] in TOLERANT else line
            for line in lines
        ]

    def backend_names(self) -> set[str]:
        """Every backend or target name this env's steps name (`convert ncnn`, bench keys, `rknn all`, ...)."""
        return set().union(*(step_keys(step, value) for step, value in self.steps.items()))

    def pytest_args(self, root: Path) -> list[str]:
        """tests with its globs expanded against the checkout (pytest options are passed as they are)."""
        return [
            a
            for arg in self.tests
            for a in (sorted(str(p) for p in root.glob(arg)) if "*" in arg and not arg.startswith("-") else [arg])
        ]


@dataclass(frozen=True)
class Table:
    root: Path
    envs: dict[str, Env]  # in `order`
    tools: dict[str, list[str]]

    @property
    def report_env(self) -> str:
        return next(e.name for e in self.envs.values() if e.report)

    def with_step(self, step: str) -> list[str]:
        return [e.name for e in self.envs.values() if step in e.steps]

    def may_fail(self) -> list[str]:
        """Every key some env's steps let fail (may_fail, detect_may_fail), for the report that merges their rows."""
        return sorted({k for e in self.envs.values() for step in MAY_FAIL for k in e.steps.get(step, [])})

    def cpu_envs(self) -> list[str]:
        return [e.name for e in self.envs.values() if not e.needs]

    def cli_commands(self, env: str) -> set[str]:
        """The `modelport` subcommands installed in env: its packages' ``modelport.commands`` entry points."""
        names: set[str] = set()
        for p in self.envs[env].packages:
            project = tomllib.loads((self.root / "packages" / p / "pyproject.toml").read_text(encoding="utf-8"))
            names |= set(project.get("project", {}).get("entry-points", {}).get("modelport.commands", {}))
        return names

    def env_for(self, args: Sequence[str]) -> str:
        """The env whose venv runs `modelport ARGS`: the one with that subcommand and every backend named.

        Backends are the names in an env's [steps] (`bench ncnn` runs in ncnn, `analyze rknn-int8` in rknn);
        a command naming none (report, bundle, init, fetch, doctor, --help) runs in the report env when it has it.
        """
        per_env = {name: self.cli_commands(name) for name in self.envs}
        known = set().union(*per_env.values())
        sub = next((a for a in args if a in known), None)
        if sub is None:
            return self.report_env
        candidates = [name for name, cmds in per_env.items() if sub in cmds]
        every = set().union(*(e.backend_names() for e in self.envs.values()))
        rest = args[list(args).index(sub) + 1 :]
        # `--ncnn-int8`: the original scripts' flag for a backend names it as well
        named = [a for a in rest if not a.startswith("-")] + [a[2:] for a in rest if a.startswith("--") and a[2:] in every]
        owners = {key: [e for e in candidates if key in self.envs[e].backend_names()] for key in named}
        owned = {key: where for key, where in owners.items() if where}
        if not owned:
            return self.report_env if self.report_env in candidates else candidates[0]
        fits = [e for e in candidates if all(e in where for where in owned.values())]
        if not fits:
            spread = ", ".join(f"{key} ({'/'.join(where)})" for key, where in owned.items())
            raise TableError(f"`modelport {sub}` names backends of different envs: {spread}; run one env's at a time")
        return fits[0]


ARTIFACTS_ENV = "MODELPORT_ARTIFACTS"


def artifacts_root(environ: Mapping[str, str] | None = None) -> Path:
    """The artifacts folder every step uses: $MODELPORT_ARTIFACTS, else ./artifacts (absolute)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(ARTIFACTS_ENV) or "artifacts").resolve()


def checkout_root() -> Path:
    """The repo this file sits in (packages/common/src/modelport/common/envs.py)."""
    return Path(__file__).resolve().parents[5]


# --- reading and validating -------------------------------------------------------------------

_TYPES = {
    "order": int,
    "packages": list,
    "image": str,
    "services": list,
    "tests": list,
    "needs": str,
    "without_toolchain": list,
    "report": bool,
    "requirements": list,
    "steps": dict,
}
_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", bool: "true or false", dict: "a table"}
_REQUIRED = ("order", "packages", "image", "services", "tests", "requirements")


def _strings(value: object, what: str, where: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TableError(f"{where}: {what} must be a list of non-empty strings")
    return value


def load_env(path: Path, root: Path) -> Env:
    """One envs/<env>/env.toml, checked against the checkout at root."""
    name = path.parent.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TableError(f"{path}: {e}") from None
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise TableError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TYPES))})")
    for key in _REQUIRED:
        if key not in data:
            raise TableError(f"{path}: missing key {key!r}")
    for key, value in data.items():
        if not isinstance(value, _TYPES[key]) or (_TYPES[key] is int and isinstance(value, bool)):
            raise TableError(f"{path}: {key} must be {_TYPE_NAMES[_TYPES[key]]}, not {value!r}")
    for key in ("packages", "services", "tests", "without_toolchain", "requirements"):
        _strings(data.get(key, []), key, path)
    if data["packages"] == ["*"]:
        # The report env holds every package (each backend's descriptors order and judge the report's rows),
        # so a new backend is a folder, not an edit here and in this env's Dockerfile.
        data["packages"] = every_package(root)
    for p in data["packages"]:
        if p == "*" or not (root / "packages" / p / "pyproject.toml").is_file():
            raise TableError(f"{path}: package {p!r} has no packages/{p}/pyproject.toml")
    needs = data.get("needs")
    if needs is not None and needs not in NEEDS:
        raise TableError(f"{path}: needs must be one of {sorted(NEEDS)}, not {needs!r}")
    if needs and not data.get("without_toolchain"):
        raise TableError(f"{path}: an env with needs = {needs!r} must say what it installs without it (without_toolchain)")
    if not needs and "without_toolchain" in data:
        raise TableError(f"{path}: without_toolchain is only used with needs")
    steps = data.get("steps", {})
    for step, value in steps.items():
        if step in COMMAND_LISTS:
            if not isinstance(value, list) or not value:
                raise TableError(f"{path}: steps.{step} must be a non-empty list of command lines")
            for line in value:
                _strings(line, f"steps.{step} entries", path)
                if not line:
                    raise TableError(f"{path}: steps.{step} has an empty command line")
        elif step in KEY_LISTS or step in MAY_FAIL:
            if not _strings(value, f"steps.{step}", path):
                raise TableError(f"{path}: steps.{step} is empty")
        else:
            raise TableError(f"{path}: unknown step {step!r} (known: {', '.join(COMMAND_LISTS + KEY_LISTS + MAY_FAIL)})")
    for tolerant in MAY_FAIL:
        detector = tolerant.startswith("detect_")
        named = set().union(
            *(step_keys(s, v) for s, v in steps.items() if s not in MAY_FAIL and s.startswith("detect_") == detector)
        )
        unused = [k for k in steps.get(tolerant, []) if k not in named]
        if unused:
            raise TableError(f"{path}: steps.{tolerant} names {unused[0]!r}, which no step of the same model runs")
    reqs = [path.parent / r for r in data["requirements"]]
    for r in reqs:
        if not r.is_file():
            raise TableError(f"{path}: requirements file {r.name} does not exist")
    unnamed = sorted(p.name for p in path.parent.glob("requirements*.txt") if p not in reqs)
    if unnamed:
        raise TableError(f"{path}: {unnamed[0]} is not in requirements (a pin file nothing installs)")
    return Env(
        name=name,
        order=data["order"],
        packages=data["packages"],
        image=data["image"],
        services=data["services"],
        tests=data["tests"],
        requirements=reqs,
        steps=steps,
        needs=needs,
        without_toolchain=data.get("without_toolchain", []),
        report=data.get("report", False),
    )


def load(root: Path | None = None) -> Table:
    """Every envs/*/env.toml plus envs/tools.toml; raises TableError (one line) on the first problem."""
    root = Path(root or checkout_root())
    folder = root / "envs"
    if not folder.is_dir():
        raise TableError(f"{folder}: no env table here (envs/<env>/env.toml)")
    envs: list[Env] = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (d / "env.toml").is_file():
            envs.append(load_env(d / "env.toml", root))
        elif (d / "Dockerfile").exists() or any(d.glob("requirements*.txt")):
            raise TableError(f"{d / 'env.toml'}: missing (envs/{d.name}/ has a Dockerfile or requirements but no table entry)")
    if not envs:
        raise TableError(f"{folder}: no envs/<env>/env.toml found")
    seen: dict[tuple[str, object], str] = {}
    for e in envs:
        for what, value in (("order", e.order), ("image", e.image), *(("service", s) for s in e.services)):
            other = seen.setdefault((what, value), e.name)
            if other != e.name:
                raise TableError(f"{folder / e.name / 'env.toml'}: {what} {value!r} is also envs/{other}/env.toml's")
    reporters = [e.name for e in envs if e.report]
    if len(reporters) != 1:
        raise TableError(f"{folder}: exactly one env.toml must say report = true, found {reporters or 'none'}")
    return Table(root, {e.name: e for e in sorted(envs, key=lambda e: e.order)}, load_tools(folder / "tools.toml"))


def load_tools(path: Path) -> dict[str, list[str]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TableError(f"{path}: {e}") from None
    if set(data) != set(TOOLS):
        raise TableError(f"{path}: must define exactly {', '.join(TOOLS)} (has {', '.join(sorted(data)) or 'nothing'})")
    return {k: _strings(v, k, path) for k, v in data.items()}


# --- hardware ---------------------------------------------------------------------------------


def gpu_missing() -> str | None:
    """Why TensorRT cannot be installed here (its wheels and pycuda need an NVIDIA driver), or None."""
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        return None
    return "no NVIDIA driver/GPU on this machine (no /proc/driver/nvidia, no nvidia-smi)"


def missing(env: Env) -> str | None:
    """Why this env's toolchain cannot be installed on this machine, or None."""
    return gpu_missing() if env.needs == "gpu" else None


# --- venvs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What goes into one venv, in install order: pins, requirement files, editable packages (--no-deps)."""

    pins: list[str] = field(default_factory=list)
    requirements: list[Path] = field(default_factory=list)
    packages: list[Path] = field(default_factory=list)  # folders holding a pyproject.toml

    def digest(self) -> str:
        """Changes exactly when what pip would install changes: pins, requirement files (name and text), pyprojects."""
        h = hashlib.sha256()
        for pin in self.pins:
            h.update(b"pin\0" + pin.encode() + b"\0")
        for req in self.requirements:
            h.update(b"req\0" + req.name.encode() + b"\0" + req.read_bytes() + b"\0")
        for pkg in self.packages:
            h.update(b"pkg\0" + pkg.name.encode() + b"\0" + (pkg / "pyproject.toml").read_bytes() + b"\0")
        return h.hexdigest()


def env_recipe(table: Table, name: str, why_missing: str | None) -> Recipe:
    """The env's toolchain, or (why_missing set) only its without_toolchain pins, plus its packages."""
    env = table.envs[name]
    packages = [table.root / "packages" / p for p in env.packages]
    if why_missing:
        return Recipe(pins=env.without_toolchain, packages=packages)
    return Recipe(requirements=env.requirements, packages=packages)


@dataclass(frozen=True)
class Plan:
    venv: Path
    reuse: bool
    build: list[list[str]]  # run these, then write_stamp()
    extra: list[list[str]]  # then these (outside the stamp)
    digest: str

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def write_stamp(self) -> None:
        (self.venv / STAMP).write_text(self.digest)


def plan(venv: Path, recipe: Recipe, python: str, extra: Sequence[str] = ()) -> Plan:
    """Reuse venv if its stamp matches recipe's digest (and its python is there), else the commands rebuilding it."""
    digest = recipe.digest()
    stamp = venv / STAMP
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    more = [[*pip, *extra]] if extra else []
    if stamp.is_file() and stamp.read_text() == digest and (venv / "bin" / "python").exists():
        return Plan(venv, True, [], more, digest)
    build = [[python, "-m", "venv", "--clear", str(venv)], [*pip, "--upgrade", "pip"]]
    if recipe.pins:
        build.append([*pip, *recipe.pins])
    for req in recipe.requirements:
        build.append([*pip, *(["--no-deps"] if "nodeps" in req.name else []), "-r", str(req)])
    if recipe.packages:
        build.append([*pip, "--no-deps", *[a for p in recipe.packages for a in ("-e", str(p))]])
    return Plan(venv, False, build, more, digest)
