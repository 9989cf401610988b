"""`modelport report`."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.log import console


@click.command()
@click.pass_obj
def report(ctx: StepContext):
    """Merge results/*.json into report/results.md (+ latency.png, accuracy.png), results.json and results.csv.

    Results of a different source model or preprocessing than the reference are refused.
    """
    from .report import build, write
    from .report_md import terminal_table

    data = build(ctx.store)
    with ctx.store.lock():
        paths = write(ctx.store, data)
    console.print(terminal_table(data))
    for n in data["notes"]:
        console.print(f"note: {n}")
    console.print(f"report: {paths['md']}  (also {paths['json'].name}, {paths['csv'].name}, latency.png, accuracy.png)")
