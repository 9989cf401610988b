"""Every command README.md shows runs as written from a fresh clone: each `nox -s` session exists, each
modelport command line parses in the env that runs it (checked with --help: nothing runs), and what the
commands write stays out of git."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from typing import cast

import pytest

from modelport.common import envs
from modelport.common.cli import _register, cli, main

ROOT = envs.checkout_root()
TABLE = envs.load(ROOT)
STEP_SESSIONS = ("convert", "bench", "rknn", "analyze")  # each env's step command lines, with the session's posargs
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
PLACEHOLDER = re.compile(r"^([A-Z][A-Z_]*(\.\.\.)?|.*<[a-z-]+>.*)$")  # ARGS, TARGET..., .nox/env-<env>/...


def readme_commands(text: str) -> list[list[str]]:
    """The nox / modelport command lines of a Markdown text: fenced shell blocks line by line, and inline code."""
    # Each fence pairs with the next: a ```text block's closing fence must not open a shell block.
    fenced = re.findall(r"^```(\w*)\n(.*?)^```[ \t]*$", text, re.S | re.M)
    lines = [line for lang, block in fenced if lang in ("", "bash", "sh", "console") for line in block.splitlines()]
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))]
    out = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words == ["modelport"]:
            continue  # the program's name in prose, not a command line
        if words and (words[0] in ("nox", "modelport") or words[0].endswith("/bin/modelport")):
            out.append(words)
    return out


def nox_sessions() -> set[str]:
    """The session names noxfile.py defines (its functions decorated with nox.session, by name= when given)."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef):
            continue
        for d in node.decorator_list:
            call = d if isinstance(d, ast.Call) else None
            target = call.func if call else d
            if ast.unparse(target) == "nox.session":
                named = [cast(str, cast(ast.Constant, k.value).value) for k in (call.keywords if call else []) if k.arg == "name"]
                names.add(named[0] if named else node.name)
    return names


def cli_lines(words: list[str]) -> list[tuple[str, list[str]]]:
    """(env, modelport args) for each modelport command a README command line runs."""
    words = [w for w in words if not PLACEHOLDER.match(w) or w == words[0]]  # a template: what is spelled out
    if words[0] != "nox":
        env = words[0].split("/")[-3].removeprefix("env-") if "/" in words[0] else "<env>"
        return [(TABLE.env_for(words[1:]) if PLACEHOLDER.match(env) else env, words[1:])]
    sessions, posargs = words[words.index("-s") + 1 :], []
    if "--" in sessions:
        sessions, posargs = sessions[: sessions.index("--")], sessions[sessions.index("--") + 1 :]
    posargs = [a for a in posargs if a != "--in-docker"]  # the noxfile's own flag, never passed to the CLI
    out: list[tuple[str, list[str]]] = []
    for session in sessions:
        if session == "modelport":
            out.append((TABLE.env_for(posargs), posargs))
        elif session in ("init", "report"):
            out.append((TABLE.report_env, [session, *posargs]))
        elif session in STEP_SESSIONS:
            out += [(e, [*c, *posargs]) for e in TABLE.with_step(session) for c in TABLE.envs[e].commands(session)]
    return out


README = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_shows_the_commands_this_test_reads() -> None:
    shown = {" ".join(w) for w in README}
    assert "nox -s convert bench rknn" in shown and "nox -s tests" in shown
    assert any(w[:4] == ["nox", "-s", "modelport", "--"] for w in README)


@pytest.mark.parametrize("words", README, ids=[" ".join(w) for w in README])
def test_every_readme_command_runs_as_written(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # A bare `modelport` is on no PATH: the CLI lives in .nox/env-<env>/bin/, reached through nox.
    assert words[0] != "modelport", "write `nox -s modelport -- ...` (modelport is not on a fresh clone's PATH)"
    if words[0] == "nox":
        assert "-s" in words, "name the sessions with -s"
        sessions = words[words.index("-s") + 1 :]
        sessions = sessions[: sessions.index("--")] if "--" in sessions else sessions
        unknown = set(sessions) - nox_sessions()
        assert not unknown, f"no such nox session: {sorted(unknown)} (noxfile.py has {sorted(nox_sessions())})"
    _register()
    for env, args in cli_lines(words):
        assert env in TABLE.envs, f"no env {env!r}"
        sub = next((a for a in args if a in TABLE.cli_commands(env)), None)
        if sub is None:
            assert not [a for a in args if not a.startswith("-")] or args[0].startswith("-"), f"no command in {args}"
        if sub is not None and sub not in cli.commands:
            continue  # another env's command (rknn): its env declares it; its options are checked in that env's tests
        # --help is eager: the line's options are parsed (an unknown one fails) and nothing runs.
        assert main([*args, "--help"]) == 0, f"`modelport {shlex.join(args)}` in {env}: {capsys.readouterr()}"


def test_every_step_command_runs_in_the_env_the_modelport_session_picks() -> None:
    for name, env in TABLE.envs.items():
        for step in (*envs.COMMAND_LISTS, *envs.KEY_LISTS):
            for line in env.commands(step):
                if line != ["fetch"]:  # names no backend: the report env, which is where it runs
                    assert TABLE.env_for(line) == name, (name, line)


def test_the_modelport_session_refuses_backends_of_two_envs() -> None:
    with pytest.raises(envs.TableError, match=r"ncnn \(ncnn\), onnx \(tf-onnx\)"):
        TABLE.env_for(["bench", "ncnn", "onnx"])
    assert TABLE.env_for(["bench", "--ncnn-int8"]) == "ncnn" and TABLE.env_for(["report", "--merge", "a", "b"]) == "tf-onnx"


def test_what_readme_commands_write_is_ignored_by_git() -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    written = []
    for words in README:
        written += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    written += [f"{d}/report/results.json" for d in re.findall(r"MODELPORT_ARTIFACTS=(\S+)", text)]
    assert len(written) >= 3, written
    for path in written:
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", path])
        assert ignored.returncode == 0, f"{path} (a README command writes it) is not in .gitignore"
