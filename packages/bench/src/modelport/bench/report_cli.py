"""`modelport report`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from modelport.common.context import StepContext
from modelport.common.errors import ModelportError
from modelport.common.images import resolve_images
from modelport.common.log import console
from modelport.common.registry import failures, may_fail_option
from modelport.runtime.registry import RUNTIMES


def eval_photos(ctx: StepContext, folders: Sequence[Path]) -> dict[str, Path]:
    """The photos the detector rows' boxes are drawn on, by file name: this config's eval photos, then the
    ``--photos`` folders' (each must hold images), which win (named for these rows; the eval photos may share
    their names); a row whose photo is in neither is drawn on a blank canvas (a bundle carries no photos)."""
    found = {p.name: p for folder in folders for p in resolve_images(folder)}
    try:
        return {p.name: p for p in ctx.eval_images} | found
    except ModelportError:
        return found


@click.command()
@click.option(
    "--merge",
    "merge_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="PATH...",
    help="Also merge results from other artifacts folders or bundles (`modelport bundle export`): "
    "--merge A B C or --merge A --merge B. Per (model, backend, device) a measured result beats a skipped one, "
    "then newer beats older.",
)
@click.option(
    "--photos",
    "photo_folders",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Also look here for the detector rows' headline photos (merged rows from another config's eval photos); repeatable.",
)
@may_fail_option(RUNTIMES)
# click options take one value each: the paths after the first form this argument, valid only with --merge
@click.argument("more_paths", nargs=-1, type=click.Path(path_type=Path), metavar="")
@click.pass_obj
def report(
    ctx: StepContext,
    merge_paths: tuple[Path, ...],
    photo_folders: tuple[Path, ...],
    may_fail: tuple[str, ...],
    more_paths: tuple[Path, ...],
) -> None:
    """Merge results/*.json into report/results.md (+ results.html, latency.png, accuracy.png), results.json and results.csv.

    In one artifacts folder, results of a different source model or preprocessing than the
    reference are refused. With --merge, results of other machines and models are shown
    side by side (identity: model, backend, device), stored under merged/<model>/<device>/,
    with a models x backends matrix per device.
    Failed steps are rows with their reason; the report is still written, and then the
    command exits non-zero unless every failed row's key is given with --may-fail (a report with no `ok` row
    always does).
    """
    from .report import build, write
    from .report_md import terminal_table

    if more_paths and not merge_paths:
        raise click.UsageError(f"{more_paths[0]}: paths to merge follow --merge (modelport report --merge A B)")

    with ctx.store.lock():
        data = build(ctx.store, ctx.config, [*merge_paths, *more_paths])
        paths = write(ctx.store, data, eval_photos(ctx, photo_folders))
    console.print(terminal_table(data))
    for n in data["notes"]:
        console.print(f"note: {n}", markup=False)
    also = [p.name for k, p in paths.items() if k != "md"]
    console.print(f"report: {paths['md']}  (also {', '.join(also)})", markup=False)
    statuses = [e["status"] for e in data["results"]]
    failed = [e["key"] for e in data["results"] if e["status"] == "failed"]
    if "ok" not in statuses:
        raise ModelportError(
            f"no backend produced a result ({statuses.count('failed')} failed, "
            f"{statuses.count('skipped')} skipped): see the reasons above",
            paths["md"],
        )
    failed = failures(failed, may_fail)
    if failed:
        raise ModelportError(
            f"{len(failed)} of {len(statuses)} rows failed: {', '.join(failed)} (reasons in the table)", paths["md"]
        )
