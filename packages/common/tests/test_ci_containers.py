"""The container check's compose override (.ci/containers/stack.py): what it changes in compose.yaml's services."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport.common import envs

ROOT = envs.checkout_root()


def stack_module() -> Any:
    spec = importlib.util.spec_from_file_location("ci_containers_stack", ROOT / ".ci" / "containers" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_override_lightens_only_the_bench_commands_and_compose_merges_it(tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose): it resolves compose.yaml")
    stack = stack_module()
    compose = stack.Compose({"PATH": "/usr/bin:/bin"}, "override-test", tmp_path, ROOT / "data")
    services = compose.config()
    built: dict[str, dict[str, str]] = {s.env: {} for s in services.values() if s.env and not s.profiles}
    written = yaml.safe_load(compose.write_override(services, built))["services"]
    shipped = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    bench = {name for name, spec in shipped.items() if spec["command"][0] == "bench" and not spec.get("profiles")}
    assert bench >= {"bench-tf-onnx", "bench-ncnn"}
    for name, spec in written.items():
        if name in bench:  # the same backends, then the CI-only options
            assert spec["command"] == [*shipped[name]["command"], *stack.CI_BENCH], name
        else:
            assert "command" not in spec, name
    merged = subprocess.run(
        [*compose.base_cmd(), "config"], cwd=ROOT, env=compose.docker_env, capture_output=True, text=True, check=True
    ).stdout
    resolved = yaml.safe_load(merged)["services"]
    assert all(resolved[name]["command"] == written[name]["command"] for name in bench)
    assert resolved["rknn"]["command"] == shipped["rknn"]["command"]
