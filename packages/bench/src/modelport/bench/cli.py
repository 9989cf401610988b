"""`modelport bench` (run backends on the eval images, write their results) and `modelport depth`."""

from __future__ import annotations

from typing import Any, cast

import click
from rich.markup import escape

from modelport.common.context import StepContext
from modelport.common.display import settings_text
from modelport.common.errors import ModelportError
from modelport.common.log import console, skip, step, warn
from modelport.common.log import failed as log_failed
from modelport.common.recovery import speed_text
from modelport.common.registry import chosen, failures, legacy_flags, may_fail_option
from modelport.common.schema import BackendResult, LatencyStats
from modelport.runtime.registry import RUNTIMES, runtime_class, source_key

from .registry import DEPTH_KEYS, SOURCE


@click.command()
@click.argument("backends", nargs=-1, type=click.Choice([SOURCE, *RUNTIMES]), metavar="BACKEND...")
@legacy_flags(RUNTIMES)
@may_fail_option(RUNTIMES)
@click.option("--runs", type=int, help="Timed runs (default: [bench] runs).")
@click.option("--warmup", type=int, help="Warm-up runs (default: [bench] warmup).")
@click.option(
    "--settings",
    "settings_mode",
    type=click.Choice(["default", "tuned"]),
    default="default",
    show_default=True,
    help="tuned: each backend's winner from depth/tuning.json (`modelport depth tune`).",
)
@click.option(
    "--labeled",
    type=click.Path(exists=True),
    metavar="SRC",
    help="Also top-1/top-5 accuracy on ground truth: a folder per class or an image<TAB>label file.",
)
@click.pass_obj
def bench(
    ctx: StepContext,
    /,
    backends: tuple[str, ...],
    runs: int | None,
    warmup: int | None,
    settings_mode: str,
    labeled: str | None,
    may_fail: tuple[str, ...],
    **flags: bool,
) -> None:
    """Benchmark BACKEND... (any of: {keys}; `source` = the source model in its own runtime).

    Each backend runs every eval image (top-5, raw outputs, agreement with the
    reference: the source model's outputs) and then the headline image for warm-up + timed runs. Results go to
    results/<backend>.json and .npy. A backend whose toolchain or hardware is missing
    here is recorded as skipped with the reason; the command fails only if a backend
    that could run failed (and was not given with --may-fail).
    """
    picked = chosen(RUNTIMES, backends, flags)
    if not picked:
        raise click.UsageError(f"name at least one backend: {', '.join(RUNTIMES)}")
    if runs is not None:
        ctx.overrides.append(("bench.runs", runs))
    if warmup is not None:
        ctx.overrides.append(("bench.warmup", warmup))
    _check_usage(ctx, labeled)
    if SOURCE in picked:  # after the overrides: this reads the config
        key = source_key(ctx.config.contract)
        picked = list(dict.fromkeys(key if k == SOURCE else k for k in picked))

    failed = []
    with ctx.store.lock():
        for key in picked:
            step(f"bench {key}" + (" (tuned settings)" if settings_mode == "tuned" else ""))
            r = _bench_one(ctx, key, settings_mode)
            if r.status == "skipped":
                skip(f"{key}: {r.reason}")
            elif r.status == "failed":
                log_failed(f"{key}: {r.reason}")
                failed.append(key)
            else:
                a = r.agreement
                lat = cast(LatencyStats, r.latency_ms)  # an ok row has one
                head = f", {r.headline.label} {r.headline.confidence:.3f}" if r.headline else ", no box on the headline photo"
                agree = f", top-1 agreement {a.top1:.0%}, cosine min {a.cosine_min:.5f}" if a else ""
                if a is not None and a.detect is not None:
                    d, post = a.detect, r.postprocess_ms
                    mean_ap = f", mAP {d.map:.4f}, AP50 {d.ap50:.4f}" if d.map is not None and d.ap50 is not None else ""
                    agree = f", boxes F1 vs source {d.f1:.4f}{mean_ap}" + (f", postprocess {post.median:.2f} ms" if post else "")
                console.print(
                    f"   {r.name}: median {lat.median:.2f} ms, p90 {lat.p90:.2f} ms ({lat.fps:.1f} FPS){head}{agree}",
                    markup=False,
                )
                for line in _beyond_lines(r):
                    console.print(f"   {line}")
                if r.under_load:
                    warn(f"{key}: {r.under_load}; the latency is not trustworthy (rerun on a quiet machine)")
                if r.unsteady:
                    warn(f"{key}: UNSTEADY: {r.unsteady}; the machine's speed changed during the row, the median is one mode")
                if r.sustained and r.sustained.flag:
                    warn(f"{key}: sustained run: {r.sustained.flag}; its latency holds only for a moment of it")
                if r.agreement_note:
                    warn(f"{key}: {r.agreement_note}")
                if r.speed and r.speed.slow:
                    warn(f"{key}: {speed_text(r.speed)}")
            if labeled and r.status == "ok":
                _labeled_one(ctx, key, labeled, settings_mode)
    failed = failures(failed, may_fail)
    if failed:
        raise ModelportError(f"failed: {', '.join(failed)} (each is a row with its reason in the report)")


def _beyond_lines(r: BackendResult) -> list[str]:
    """Throughput, cold start and memory, frame time of a benchmarked row, for the terminal."""
    out = []
    if best := r.best_throughput:
        out.append(f"throughput: best {best.fps:.1f} FPS at concurrency {best.concurrency} (p99 {best.p99:.2f} ms)")
    if c := r.cold_start:
        out.append(
            f"fresh process: load {c.load_ms:.1f} ms, first inference {c.first_infer_ms:.2f} ms, peak RSS "
            f"{c.peak_rss_bytes / 2**20:.1f} MiB ({c.model_rss_bytes / 2**20:.1f} MiB over the toolchain alone)"
        )
    if f := r.frame_ms:
        out.append(
            f"whole frame: {f.total:.2f} ms (decode {f.decode:.2f} + preprocess {f.preprocess:.2f} + infer "
            f"{f.infer:.2f} + postprocess {f.postprocess:.2f})"
        )
    if s := r.sustained:
        out.append(
            f"sustained {s.seconds:g} s ({len(s.windows)} windows): p50 {s.first_p50:.2f} -> {s.last_p50:.2f} ms, p99 "
            f"{s.first_p99:.2f} -> {s.last_p99:.2f} ms" + (f", {s.flag}" if s.flag else "")
        )
    if p := r.layer_profile:
        if p.reason:
            out.append(f"per-layer time: not measured: {escape(p.reason)}")
        else:
            top = ", ".join(f"{escape(t.name)} ({escape(t.op)}) {t.ms:.3f} ms ({t.share:.1%})" for t in p.slowest[:3])
            split = " / ".join(f"{p.shares.get(c, 0):.1%}" for c in ("quantize", "dequantize", "reorder"))
            out.append(f"slowest layers: {top}; quantize / dequantize / reorder {split} of {p.layers} layers' time")
    return out


def _check_usage(ctx: StepContext, labeled: str | None) -> None:
    """Everything a user can get wrong, checked before any backend runs or any result is written."""
    from modelport.common.results import headline_index

    from .labeled import read_labeled

    headline_index(ctx)  # reads the config and the eval images; a mistyped headline is named now
    if labeled:
        read_labeled(labeled)


def _settings(ctx: StepContext, key: str, mode: str) -> dict[str, Any]:
    if mode == "default":
        return {}
    from .tuning import tuned_settings

    return tuned_settings(ctx.store, key)


def _bench_one(ctx: StepContext, key: str, mode: str) -> BackendResult:
    from modelport.common.artifacts import write_atomic

    from .runner import benchmark

    settings = _settings(ctx, key, mode) if mode == "tuned" and _runnable(key) else {}
    if not settings:
        return benchmark(ctx, key)
    replaced = _default_row(ctx, key)
    # A context whose config carries the tuned values: the result's settings show what ran.
    tuned = StepContext(
        config_path=ctx.config_path, overrides=[*ctx.overrides, *settings.items()], artifacts=ctx.artifacts, force=ctx.force
    )
    r = benchmark(tuned, key)
    if r.status == "ok":
        # The row's one file now holds the tuned run: its name says so in every table and chart, and its
        # note says what it replaced, so a tuned number is never read as the default settings' number.
        r.name = f"{r.name} (tuned)"
        r.notes.append("tuned settings from depth/tuning.json: " + settings_text(settings))
        r.notes.append(f"replaces the default-settings row{replaced}; `modelport bench {key}` measures the defaults again")
        write_atomic(ctx.store.path(f"results/{key}.json"), r.dump())  # the .npy beside it is unchanged
        warn(f"{key}: the tuned run replaced the default-settings row{replaced}")
    return r


def _default_row(ctx: StepContext, key: str) -> str:
    """What the tuned run replaces, as its note says it: the default-settings row's median, if there was one."""
    path = ctx.store.path(f"results/{key}.json")
    try:
        old = BackendResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if old.status != "ok" or old.latency_ms is None or old.name.endswith("(tuned)"):
        return ""
    return f" (median {old.latency_ms.median:.2f} ms, measured {old.created_utc})"


def _runnable(key: str) -> bool:
    return runtime_class(key).unavailable_reason() is None


def _labeled_one(ctx: StepContext, key: str, src: str, mode: str) -> None:
    from .labeled import labeled_accuracy, write_labeled

    data = labeled_accuracy(ctx, key, src, _settings(ctx, key, mode))
    write_labeled(ctx, data)
    lo, hi = data["top1_ci95"]
    console.print(
        f"   labeled ({data['images']} images): top-1 {data['top1']:.1%} (95% CI {lo:.1%}-{hi:.1%}), top-5 {data['top5']:.1%}"
    )


# -- `modelport depth ...`: sweeps, tuning, harness overhead (issue 7). Each writes depth/<what>-<key>.json;
# `modelport report` renders them into report/sections/depth-*.md with charts.


def _depth_keys(backends: tuple[str, ...]) -> list[str]:
    keys = list(backends) or DEPTH_KEYS
    runnable = [k for k in keys if _runnable(k)]
    for k in keys:
        if k not in runnable:
            skip(f"{k}: {runtime_class(k).unavailable_reason()}")
    return runnable


def _warn_load(data: dict[str, Any]) -> None:
    if data.get("under_load"):
        warn(f"{data['key']}: {data['under_load']}; these timings are not trustworthy (rerun on a quiet machine)")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


backend_args = click.argument("backends", nargs=-1, type=click.Choice(DEPTH_KEYS), metavar="[BACKEND...]")
settings_opt = click.option(
    "--settings",
    "settings_mode",
    type=click.Choice(["default", "tuned"]),
    default="default",
    show_default=True,
    help="Run with the configured settings or the tuned winners.",
)


@click.group()
def depth() -> None:
    """Sweeps, tuning and harness overhead for BACKEND... (default: every one this env can run)."""


@depth.command("sweep")
@backend_args
@click.option("--batches", default="1,2,4,8,16,32,64", show_default=True, help="Batch sizes.")
@click.option("--threads", default=None, help="Thread counts (default: 1, 2 .. this machine's cores).")
@settings_opt
@click.pass_obj
def sweep_cmd(ctx: StepContext, backends: tuple[str, ...], batches: str, threads: str | None, settings_mode: str) -> None:
    """Latency and images/s over batch sizes x thread counts -> depth/sweep-<backend>.json."""
    from .sweep import sweep, write_sweep
    from .tuning import THREAD_COUNTS

    with ctx.store.lock():
        for key in _depth_keys(backends):
            step(f"sweep {key}")
            data = sweep(
                ctx, key, _ints(batches), _ints(threads) if threads else THREAD_COUNTS, _settings(ctx, key, settings_mode)
            )
            write_sweep(ctx, data)
            _warn_load(data)


@depth.command("tune")
@backend_args
@click.pass_obj
def tune_cmd(ctx: StepContext, backends: tuple[str, ...]) -> None:
    """Bounded search for each backend's fastest settings here -> depth/tuning.json."""
    from .tuning import save_entry, tune

    with ctx.store.lock():
        for key in _depth_keys(backends):
            step(f"tune {key}")
            entry = tune(ctx, key)
            save_entry(ctx.store, entry)
            _warn_load(entry)
            changed = settings_text(entry["changed"]) or "the defaults"
            console.print(
                f"   {entry['name']}: default {entry['default_ms']['median']:.2f} ms -> tuned "
                f"{entry['tuned_ms']['median']:.2f} ms (x{entry['speedup']:.2f}) with {changed}"
            )


@depth.command("overhead")
@backend_args
@settings_opt
@click.pass_obj
def overhead_cmd(ctx: StepContext, backends: tuple[str, ...], settings_mode: str) -> None:
    """Benchmark harness vs a bare loop of the toolchain's own call -> depth/overhead-<backend>.json."""
    from .overhead import measure_overhead, write_overhead

    with ctx.store.lock():
        for key in _depth_keys(backends):
            step(f"harness overhead {key}")
            data = measure_overhead(ctx, key, settings=_settings(ctx, key, settings_mode))
            write_overhead(ctx, data)
            console.print(
                f"   {data['name']}: harness {data['harness_mean_ms']:.3f} ms vs bare {data['bare_mean_ms']:.3f} ms: "
                f"ratio {data['ratio']:.3f} (goal <= {data['goal']})"
            )
            _warn_load(data)


@depth.command("peer")
@backend_args
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True, help="Interleaved rounds.")
@click.option("--seconds", type=click.FloatRange(1, 600), default=10.0, show_default=True, help="Each side's run per round.")
@click.pass_obj
def peer_cmd(ctx: StepContext, backends: tuple[str, ...], rounds: int, seconds: float) -> None:
    """Our throughput vs the toolchain's own benchmark tool on the same files -> depth/peer-<backend>.json."""
    from .peer import measure_peer, peer_reason, write_peer

    with ctx.store.lock():
        for key in _depth_keys(backends):
            reason = peer_reason(key)
            if reason:
                skip(f"{key}: {reason}")
                continue
            step(f"peer {key}: {rounds} interleaved rounds of {seconds:g} s each side")
            data = measure_peer(ctx, key, rounds, seconds)
            write_peer(ctx, data)
            console.print(
                f"   {data['name']}: ours {data['ours_fps']:.1f} FPS vs {data['tool'].split()[0]} {data['tool_fps']:.1f} FPS: "
                f"ratio {data['ratio']:.3f} (goal within {data['goal']:.0%})",
                markup=False,
            )
            _warn_load(data)


bench.help = (bench.help or "").replace("{keys}", ", ".join(RUNTIMES))
