"""CI runs the README's commands in the environment a user has, not the CI machine's."""

import os
import re
import subprocess
from typing import cast

from conftest import ROOT

AS_USER = ROOT / ".ci" / "as-user"


def test_the_readme_commands_see_only_path_home_and_the_package_index_settings() -> None:
    caller = os.environ | {
        "PYTHONUNBUFFERED": "1",
        "CI": "true",
        "MODELPORT_CONFIG": "elsewhere.toml",
        "PIP_EXTRA_INDEX_URL": "https://index.example/simple",
        "PIP_FIND_LINKS": "/wheels here",  # a space: values pass through whole
    }
    out = subprocess.run([str(AS_USER), "env", "-0"], env=caller, capture_output=True, text=True, check=True).stdout
    seen = dict(item.split("=", 1) for item in out.split("\0") if item)
    assert seen["PATH"] == caller["PATH"] and seen["HOME"] == caller["HOME"]
    assert seen["PIP_EXTRA_INDEX_URL"] == "https://index.example/simple" and seen["PIP_FIND_LINKS"] == "/wheels here"
    assert {k for k in seen if not k.startswith("PIP_")} == {"PATH", "HOME"}


def test_ci_runs_both_readme_commands_through_it() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = cast(re.Match[str], re.search(r"```bash\n(.*?)```", readme, re.S)).group(1)
    shown = [m.group(0).strip() for m in re.finditer(r"nox -s [^#\n]*", commands)]
    assert shown == ["nox -s convert bench rknn", "nox -s tests"]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in shown:
        assert re.search(rf"^\$user {re.escape(command)}$", ci, re.M), command
