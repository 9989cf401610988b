"""`modelport bench`: run backends on the eval images and write their results."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.log import console, skip, step

from .registry import RUNTIMES


def _flag_options(fn):
    # --tflite, --onnx-int8, --tensorrt-fp16 ...: the original scripts' flags keep working.
    for key in reversed(list(RUNTIMES)):
        fn = click.option(f"--{key}", f"flag_{key.replace('-', '_')}", is_flag=True, hidden=True)(fn)
    return fn


@click.command()
@click.argument("backends", nargs=-1, type=click.Choice(list(RUNTIMES)), metavar="BACKEND...")
@_flag_options
@click.option("--runs", type=int, help="Timed runs (default: [bench] runs).")
@click.option("--warmup", type=int, help="Warm-up runs (default: [bench] warmup).")
@click.pass_obj
def bench(ctx: StepContext, backends, runs, warmup, **flags):
    """Benchmark BACKEND... (any of: {keys}).

    Each backend runs every eval image (top-5, raw outputs, agreement with the TFLite
    reference) and then the headline image for warm-up + timed runs. Results go to
    results/<backend>.json and .npy. A backend whose toolchain or hardware is missing
    here is recorded as skipped with the reason; the command fails only if a backend
    that could run failed.
    """
    chosen = list(backends) + [k for k in RUNTIMES if flags.get(f"flag_{k.replace('-', '_')}") and k not in backends]
    if not chosen:
        raise click.UsageError(f"name at least one backend: {', '.join(RUNTIMES)}")
    if runs is not None:
        ctx.overrides.append(("bench.runs", runs))
    if warmup is not None:
        ctx.overrides.append(("bench.warmup", warmup))
    from .runner import benchmark  # after overrides: the config is read on first use

    failed = []
    with ctx.store.lock():
        for key in chosen:
            step(f"bench {key}")
            r = benchmark(ctx, key)
            if r.status == "skipped":
                skip(f"{key}: {r.reason}")
            elif r.status == "failed":
                console.print(f"[red]failed[/] {key}: {r.reason}")
                failed.append(key)
            else:
                a = r.agreement
                agree = f", top-1 agreement {a.top1:.0%}, cosine min {a.cosine_min:.5f}" if a else ""
                console.print(
                    f"   {r.name}: median {r.latency_ms.median:.2f} ms, p90 {r.latency_ms.p90:.2f} ms "
                    f"({r.latency_ms.fps:.1f} FPS), {r.headline.label} {r.headline.confidence:.3f}{agree}"
                )
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)} (no result written for them)")


bench.help = bench.help.replace("{keys}", ", ".join(RUNTIMES))
