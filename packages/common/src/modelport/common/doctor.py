"""`modelport doctor`: per converter and runtime, can it run here, and if not exactly why.

Each package contributes rows through the ``modelport.doctor`` entry-point group; a
row never imports a heavy toolchain just to be listed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points

import click
from rich.markup import escape
from rich.table import Table

from .context import StepContext
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON on stdout.")
@click.pass_obj
def doctor(ctx: StepContext, as_json: bool) -> None:
    """Show which converters and runtimes can run in this environment, and why not."""
    rows = collect()
    if as_json:
        click.echo(json.dumps({"env": ctx.env, "machine": machine_info(), "checks": [asdict(r) for r in rows]}, indent=2))
        return
    table = Table(title=f"modelport doctor (env: {ctx.env})")
    for col in ("kind", "name", "status", "version / reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.kind, r.name, "[green]ok[/]" if r.ok else "[red]unavailable[/]", escape(r.detail))
    if not rows:
        table.add_row("-", "-", "-", "no converter or runtime package installed in this env")
    console.print(table)
