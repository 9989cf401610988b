"""modelport sessions: one per pipeline step, parametrized by toolchain env.

    nox -s convert bench rknn     the whole comparison (then the report)
    nox -s init -- MODEL --out C  a config for your own model (then MODELPORT_CONFIG=C nox -s convert bench rknn)
    nox -s tests lint             what CI runs (.ci/run)
    nox -s doctor                 what can run where, and why not
    nox -s modelport -- ARGS      any modelport command, in the env that has it

Every env is one envs/<env>/env.toml (read through modelport.common.envs): its
packages, requirement files (the same ones its Dockerfile installs), steps, image
and tests. Each gets ONE virtualenv, .nox/env-<env>, shared by its convert/bench/tests/
doctor sessions and rebuilt only when its requirement files or package metadata
change: TensorFlow is installed once, not once per session. Sessions only install
and call the `modelport` CLI; what each env runs is the same list compose.yaml uses.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import nox

ROOT = Path(__file__).parent.resolve()
# nox's interpreter has no modelport installed; modelport.common.envs needs only the standard library.
sys.path.insert(0, str(ROOT / "packages" / "common" / "src"))
from modelport.common import envs  # noqa: E402

try:
    TABLE = envs.load(ROOT)  # envs/<env>/env.toml: packages, steps, tests, image, needs of each env
except envs.TableError as e:
    sys.exit(f"noxfile: {e}")
ENVS = TABLE.envs
PYTHON = shutil.which("python3.11") or sys.executable
# One run id for every step of this invocation: results from one `nox -s convert bench rknn` belong together.
os.environ.setdefault("MODELPORT_RUN_ID", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid():x}")
nox.options.default_venv_backend = "none"  # the env venvs are managed by modelport.common.envs, once per env
nox.options.sessions = ["convert", "bench", "rknn"]
nox.options.error_on_external_run = False
# The default detector (YOLOX-nano) beside the classifier: its own config and artifacts folder, merged into the report.
DETECT_ARTIFACTS = os.environ.get("MODELPORT_DETECT_ARTIFACTS") or str(ROOT / "artifacts-yolox")
DETECT_ENV = {"MODELPORT_CONFIG": str(ROOT / envs.DETECTOR), "MODELPORT_ARTIFACTS": DETECT_ARTIFACTS}
IN_DOCKER = "--in-docker"  # `nox -s convert -- --in-docker`: each step runs in its env's image (built by compose)


def install(session: nox.Session, name: str, recipe: envs.Recipe, extra: Sequence[str] = ()) -> Path:
    """Create or reuse .nox/env-<name> for recipe; returns its bin/ directory."""
    plan = envs.plan(ROOT / ".nox" / f"env-{name}", recipe, PYTHON, extra)
    if plan.reuse:
        session.log(f"reusing {plan.venv.relative_to(ROOT)} (requirements unchanged)")
    for cmd in plan.build:
        session.run(*cmd, external=True)
    if not plan.reuse:
        plan.write_stamp()
    for cmd in plan.extra:
        session.run(*cmd, external=True)
    return plan.bin


def env_bin(session: nox.Session, env: str, extra: Sequence[str] = ()) -> Path:
    """The env's venv (its toolchain, or only what its steps need to record why it is missing)."""
    if IN_DOCKER in session.posargs:  # the step runs in the env's image: the host needs only the Docker SDK
        return install(session, "docker", envs.Recipe(pins=TABLE.tools["docker"], packages=[ROOT / "packages" / "common"]))
    why = envs.missing(ENVS[env])
    if why:
        session.warn(f"{env}: toolchain not installed: {why}; its steps will record that reason")
    return install(session, env, envs.env_recipe(TABLE, env, why), extra)


def modelport(session: nox.Session, bin_dir: Path, env: str, *args: str, detector: bool = False) -> None:
    """`modelport ARGS` (+ the session's posargs) in env; ``detector``: the default detector's step, in its own
    config and artifacts folder, without the posargs (they are the classifier's)."""
    if detector:
        session.run(
            str(bin_dir / "modelport"),
            *args,
            external=True,
            env={"MODELPORT_ENV": env, "CI": os.environ.get("CI", ""), **DETECT_ENV},
        )
        return
    if IN_DOCKER in session.posargs:
        if envs.missing(ENVS[env]):
            session.skip(f"{env} image: {envs.missing(ENVS[env])}")
        session.run(
            str(bin_dir / "python"),
            "-m",
            "modelport.common.in_docker",
            "--env",
            env,
            "--",
            *args,
            *[a for a in session.posargs if a != IN_DOCKER],
            external=True,
        )
        return
    session.run(
        str(bin_dir / "modelport"),
        *args,
        *session.posargs,
        external=True,
        env={"MODELPORT_ENV": env, "CI": os.environ.get("CI", "")},
    )


def run_step(session: nox.Session, env: str, step: str) -> None:
    """The env's command lines for step (envs/<env>/env.toml [steps]), in its venv; then the default
    detector's (detect_<step>), in its own artifacts folder."""
    bin_dir = env_bin(session, env)
    for args in ENVS[env].commands(step):
        modelport(session, bin_dir, env, *args)
    detect = ENVS[env].commands(f"detect_{step}")
    redirected = [
        v for v in ("MODELPORT_MODEL", "MODELPORT_LABELS", "MODELPORT_IMAGES", "MODELPORT_CALIBRATION") if os.environ.get(v)
    ]
    if detect and (IN_DOCKER in session.posargs or redirected):
        why = (
            "--in-docker runs the classifier only"
            if IN_DOCKER in session.posargs
            else f"{', '.join(redirected)} would redirect it"
        )
        session.warn(f"{env}: the default detector's {step} steps do not run: {why}")
        return
    for args in detect:
        modelport(session, bin_dir, env, *args, detector=True)


@nox.session
@nox.parametrize("env", TABLE.with_step("convert"))
def convert(session: nox.Session, env: str) -> None:
    """Convert the model with each env's toolchain (TFLite -> ONNX/INT8, NCNN, TensorRT, OpenVINO)."""
    run_step(session, env, "convert")


@nox.session
@nox.parametrize("env", TABLE.with_step("bench"))
def bench(session: nox.Session, env: str) -> None:
    """Benchmark each env's backends on the eval images; the report follows."""
    session.notify("report")  # first: the report shows this env's failed rows too
    run_step(session, env, "bench")


@nox.session
def rknn(session: nox.Session) -> None:
    """RKNN INT8 for Rockchip NPUs: convert, simulate, accuracy analysis; the report follows."""
    session.notify("report")
    run_step(session, "rknn", "rknn")


@nox.session(default=False)
def depth(session: nox.Session) -> None:
    """Tuning, batch x thread sweeps, harness overhead (+ labeled accuracy with MODELPORT_LABELED), then the report.

    Not part of the default run; needs `nox -s convert` first. Several minutes on a 2-core machine.
    """
    labeled = os.environ.get("MODELPORT_LABELED")  # an image<TAB>label file, or a folder per class
    for env in TABLE.with_step("depth"):
        bin_dir, keys = env_bin(session, env), ENVS[env].steps["depth"]
        for args in [*ENVS[env].commands("depth_convert"), *(["depth", what, *keys] for what in ("tune", "sweep", "overhead"))]:
            modelport(session, bin_dir, env, *args)
        if labeled:
            modelport(session, bin_dir, env, "bench", *keys, "--labeled", labeled)
    session.notify("report")


# Three simulated farm machines on this one: (device key, envs it has, extra config overrides).
FARM = [
    ("farm-sim-a", ["tf-onnx", "ncnn"], []),
    ("farm-sim-b", ["tf-onnx"], []),
    (
        "farm-sim-c",
        ["tf-onnx", "ncnn"],
        ["-o", "tflite.threads=1", "-o", "onnxruntime.intra_op_threads=1", "-o", "ncnn.threads=1"],
    ),
]


@nox.session(default=False)
def farm(session: nox.Session) -> None:
    """The device-farm path on this machine: three device keys bench the converted models, export bundles, one merge.

    Needs `nox -s convert` first (uses the models in $MODELPORT_ARTIFACTS, else ./artifacts). Writes .nox/farm/merged/report/.
    `nox -s farm -- ARGS` adds ARGS to every bench (CI: `-o bench.throughput=false ...`).
    """
    root, models = ROOT / ".nox" / "farm", envs.artifacts_root()
    if not models.is_dir():
        session.error(f"{models}: no artifacts folder to take the models from (run `nox -s convert` first)")
    shutil.rmtree(root, ignore_errors=True)
    reporter = env_bin(session, TABLE.report_env) / "modelport"
    bundles = []
    for device, device_envs, sets in FARM:
        art = root / device
        shutil.copytree(models, art, ignore=shutil.ignore_patterns("results", "report", "merged", ".tmp", ".lock"))
        env = {"MODELPORT_ARTIFACTS": str(art), "MODELPORT_DEVICE": device}
        for e in device_envs:
            session.run(
                str(env_bin(session, e) / "modelport"),
                *sets,
                "bench",
                *ENVS[e].steps["bench"],
                "--runs",
                "50",
                *session.posargs,
                external=True,
                env={**env, "MODELPORT_ENV": e},
            )
        bundles += ["--merge", str(root / f"{device}.tar.gz")]
        session.run(str(reporter), "bundle", "export", "--out", bundles[-1], external=True, env=env)
    session.run(
        str(reporter),
        "report",
        *bundles,
        external=True,
        env={"MODELPORT_ARTIFACTS": str(root / "merged"), "MODELPORT_ENV": TABLE.report_env},
    )


@nox.session(default=False)
def analyze(session: nox.Session) -> None:
    """Per-layer INT8 error of every backend vs its FP32 twin (analysis/*.json), each env its part, then the report.

    Not part of the default run; needs the INT8 models (`nox -s convert rknn`) first.
    """
    for env in TABLE.with_step("analyze"):
        if envs.missing(ENVS[env]):
            session.warn(f"{env}: skipped: {envs.missing(ENVS[env])}")
            continue
        run_step(session, env, "analyze")
    session.notify("report")


@nox.session(default=False)
def init(session: nox.Session) -> None:
    """Write a commented config for a model: nox -s init -- MODEL [--labels FILE] [-o section.key=value] --out CONFIG."""
    modelport(session, env_bin(session, TABLE.report_env), TABLE.report_env, "init")


@nox.session
def report(session: nox.Session) -> None:
    """Merge every results/*.json into artifacts/report/ (Markdown + charts, JSON, CSV), with the default
    detector's rows when its folder has some."""
    detector = ["--merge", DETECT_ARTIFACTS] if (Path(DETECT_ARTIFACTS) / "results").is_dir() else []
    if detector:  # its boxes drawn on its own headline photo, not a blank canvas
        config = ROOT / envs.DETECTOR
        detector += ["--photos", str(config.parent / tomllib.loads(config.read_text())["images"]["eval"])]
    tolerated = [a for key in TABLE.may_fail() for a in ("--may-fail", key)]  # rows the steps let fail
    modelport(session, env_bin(session, TABLE.report_env), TABLE.report_env, "report", *detector, *tolerated)


@nox.session(name="modelport", default=False)
def cli(session: nox.Session) -> None:
    """Any modelport command, in the env that has it: nox -s modelport -- bundle export --out bundles/a.tar.gz.

    The env is the one whose steps name the backends given (`-- bench ncnn` runs in ncnn, `-- rknn all` in rknn);
    commands naming none (report, bundle, init, fetch, doctor, --help) run in the report env.
    """
    try:
        env = TABLE.env_for(session.posargs)
    except envs.TableError as e:
        session.error(str(e))
    session.log(f"modelport runs in .nox/env-{env}")
    modelport(session, env_bin(session, env), env)


@nox.session
def doctor(session: nox.Session) -> None:
    """Show, per env, which converters and runtimes can run here and why not; then one summary of what runs where."""
    saved = ROOT / ".nox" / "doctor"
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir(parents=True)
    for env in ENVS:
        modelport(session, env_bin(session, env), env, "doctor", "--save", str(saved / f"{env}.json"))
    summary = [str(saved / f"{env}.json") for env in ENVS]
    modelport(session, env_bin(session, TABLE.report_env), TABLE.report_env, "doctor", "--summary", *summary)


def pytest(session: nox.Session, env: str, *args: str) -> None:
    bin_dir = env_bin(session, env, extra=TABLE.tools["tests"])
    session.run(
        str(bin_dir / "python"),
        "-m",
        "pytest",
        *ENVS[env].pytest_args(ROOT),
        "--durations=15",  # every CI log shows where the test time goes
        *args,
        *session.posargs,
        external=True,
        env={"MODELPORT_ENV": env, "MODELPORT_TEST_ARTIFACTS": TEST_ARTIFACTS},
    )


# One artifacts folder for the whole test run: later envs reuse the models tf-onnx made.
TEST_ARTIFACTS = os.environ.get("MODELPORT_TEST_ARTIFACTS") or str(ROOT / ".nox" / "test-artifacts")


@nox.session
@nox.parametrize("env", list(ENVS))
def tests(session: nox.Session, env: str) -> None:
    """Run each env's tests in that env (tf-onnx first: it makes the ONNX the others test against)."""
    pytest(session, env)


@nox.session
@nox.parametrize("env", list(ENVS))
def fast(session: nox.Session, env: str) -> None:
    """Each env's tests but the slow ones (the real model): tiny models made at test time, in that env."""
    pytest(session, env, "-m", "not slow")


KUBERNETES_VERSION = "1.32.0"  # the oldest Kubernetes the farm manifests promise to work with


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy (pyproject.toml's files), hadolint (Dockerfiles), docker-compose config, actionlint (the farm workflow),
    and every kustomize build of deploy/k8s validated offline against Kubernetes KUBERNETES_VERSION."""
    bin_dir = install(session, "lint", envs.Recipe(pins=[*TABLE.tools["lint"], *TABLE.tools["mypy"]]))
    tool: Callable[[str], str] = lambda name: str(bin_dir / name)  # noqa: E731
    session.run(tool("ruff"), "check", "packages", "noxfile.py", ".ci", external=True)
    session.run(
        tool("ruff"), "format", "--check", "packages", "noxfile.py", ".ci", "conftest.py", "tiny_models.py", external=True
    )
    # What and how: pyproject.toml's [tool.mypy]; every package's src/ as a base of the modelport namespace.
    bases = os.pathsep.join(str(ROOT / src) for src in envs.source_roots(ROOT))
    session.run(tool("mypy"), external=True, env={"MYPYPATH": bases})
    for dockerfile in sorted(ROOT.glob("envs/*/Dockerfile")):
        session.run(tool("hadolint"), str(dockerfile.relative_to(ROOT)), external=True)
    compose = shutil.which("docker-compose")
    if compose is None:
        session.error("docker-compose not found (Debian: apt-get install docker-compose) to validate compose.yaml")
    session.run(compose, "-f", "compose.yaml", "config", "--quiet", external=True)
    session.run(tool("actionlint"), external=True)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        session.error("kubectl not found (it builds the kustomizations: `kubectl kustomize`)")
    built = ROOT / ".nox" / "k8s"
    built.mkdir(parents=True, exist_ok=True)
    for kustomization in sorted(ROOT.glob("deploy/k8s/**/kustomization.yaml")):
        folder = kustomization.parent
        if "components" in folder.parts:  # components are built through the overlays that use them
            continue
        out = built / ("-".join(folder.relative_to(ROOT / "deploy" / "k8s").parts) + ".yaml")
        out.write_text(cast(str, session.run(kubectl, "kustomize", str(folder), external=True, silent=True)))
        session.run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet", str(out), external=True)


@nox.session
def containers(session: nox.Session) -> None:
    """Build the CPU env images on a private dockerd, `docker-compose up` them, check every service (.ci/containers)."""
    session.run(sys.executable, str(ROOT / ".ci" / "containers" / "run.py"), *session.posargs, external=True)
