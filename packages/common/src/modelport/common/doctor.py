"""`modelport doctor`: per converter and runtime, can it run here, and if not exactly why.

Each package contributes rows through the ``modelport.doctor`` entry-point group; a
row never imports a heavy toolchain just to be listed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from . import envs
from .artifacts import write_atomic
from .context import StepContext
from .errors import InputError
from .log import console
from .machine import machine_info


@dataclass
class Check:
    kind: str  # "convert" / "runtime" / "rknn"
    name: str
    ok: bool
    detail: str  # version when ok, the reason when not


def collect() -> list[Check]:
    rows: list[Check] = []
    for ep in sorted(entry_points(group="modelport.doctor"), key=lambda e: e.name):
        rows.extend(ep.load()())
    return rows


def summary_rows(saved: list[dict[str, Any]], owners: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """(name, a cell per env, why not) for every converter/runtime/step name in the envs' saved checks.

    A cell is ``ok`` when every check of that name passes in that env, ``no`` when one fails, empty when the env has
    none. Why not: only for a name that runs nowhere, the reason given in the env it belongs to (``owners``, from the
    env table), else in the only or first env that lists it.
    """
    per_name: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for report in saved:
        for c in report["checks"]:
            name = c["name"] if c["kind"] in ("convert", "runtime") else f"{c['kind']} {c['name']}"  # one backend's two checks
            per_name.setdefault(name, {}).setdefault(report["env"], []).append(c)
    out = []
    for name, per_env in per_name.items():
        cells = [
            "" if e not in per_env else "ok" if all(c["ok"] for c in per_env[e]) else "no" for e in (r["env"] for r in saved)
        ]
        why = ""
        if "ok" not in cells:
            home = owners.get(name, "")
            if home not in per_env:
                home = next(iter(per_env))
            why = f"{home}: " + next(c["detail"] for c in per_env[home] if not c["ok"])
        out.append((name, cells, why))
    return out


def _owners() -> dict[str, str]:
    """Backend/target name -> the env whose steps name it (empty outside a checkout: an image has no env table)."""
    try:
        table = envs.load()
    except envs.TableError:
        return {}
    return {name: e.name for e in reversed(table.envs.values()) for name in e.backend_names()}


def _read_saved(paths: Sequence[Path]) -> list[dict[str, Any]]:
    saved = []
    for p in paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"not a saved doctor report: {e}", p) from None
        if not isinstance(data, dict) or not isinstance(data.get("env"), str) or not isinstance(data.get("checks"), list):
            raise InputError("not a saved doctor report (`modelport doctor --save FILE` writes one)", p)
        saved.append(data)
    return saved


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON on stdout.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Also write the checks as JSON to this file.")
@click.option("--summary", is_flag=True, help="Instead: one table, what can run in which env, from the files SAVED by --save.")
@click.argument("saved", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def doctor(ctx: StepContext, as_json: bool, save: Path | None, summary: bool, saved: tuple[Path, ...]) -> None:
    """Show which converters and runtimes can run in this environment, and why not."""
    if summary or saved:
        if not (summary and saved):
            raise click.UsageError("--summary takes the files `modelport doctor --save FILE` wrote, one per env")
        reports = _read_saved(saved)
        table = Table(title="modelport doctor: what can run where")
        for col in ("backend / step", *(r["env"] for r in reports), "why not (where it belongs)"):
            table.add_column(col)
        for name, cells, why in summary_rows(reports, _owners()):
            table.add_row(name, *("[green]ok[/]" if c == "ok" else "[red]no[/]" if c else "" for c in cells), escape(why))
        console.print(table)
        return
    rows = collect()
    data = {"env": ctx.env, "machine": machine_info(), "checks": [asdict(r) for r in rows]}
    if save:
        write_atomic(save, json.dumps(data, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"modelport doctor (env: {ctx.env})")
    for col in ("kind", "name", "status", "version / reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.kind, r.name, "[green]ok[/]" if r.ok else "[red]unavailable[/]", escape(r.detail))
    if not rows:
        table.add_row("-", "-", "-", "no converter or runtime package installed in this env")
    console.print(table)
