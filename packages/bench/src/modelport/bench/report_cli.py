"""`modelport report`."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.errors import ModelportError
from modelport.common.log import console


@click.command()
@click.pass_obj
def report(ctx: StepContext):
    """Merge results/*.json into report/results.md (+ latency.png, accuracy.png), results.json and results.csv.

    Results of a different source model or preprocessing than the reference are refused.
    Failed steps are rows with their reason; the report is still written, and then the
    command exits non-zero (so does a report with no `ok` row).
    """
    from .report import build, write
    from .report_md import terminal_table

    data = build(ctx.store, ctx.config)
    with ctx.store.lock():
        paths = write(ctx.store, data)
    console.print(terminal_table(data))
    for n in data["notes"]:
        console.print(f"note: {n}")
    console.print(f"report: {paths['md']}  (also {paths['html'].name}, {paths['json'].name}, {paths['csv'].name}, "
                  "latency.png, accuracy.png)", markup=False)
    statuses = [e["status"] for e in data["results"]]
    failed = [e["key"] for e in data["results"] if e["status"] == "failed"]
    if "ok" not in statuses:
        raise ModelportError(f"no backend produced a result ({statuses.count('failed')} failed, "
                             f"{statuses.count('skipped')} skipped): see the reasons above", paths["md"])
    if failed:
        raise ModelportError(f"{len(failed)} of {len(statuses)} rows failed: {', '.join(failed)} (reasons in the table)",
                             paths["md"])
