"""ncnn's own concurrency on a tiny net written here (.param text + .bin): one Net shared by extractors in
several threads, the row's threads split between them. Timings are only checked to be positive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_context
from modelport.bench.measure import throughput_point
from modelport.common.timing import cores
from modelport.ncnn.runtime import NcnnRuntime

pytestmark = pytest.mark.ncnn
pytest.importorskip("ncnn")


def tiny_net(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    """1x1 convolution (3 -> 4, bias) and a global average pool: ncnn's text format, float32 weights."""
    h, w = size
    param, binfile = folder / "tiny.param", folder / "tiny.bin"
    param.write_text(
        "7767517\n3 3\n"
        f"Input in0 0 1 in0 0={w} 1={h} 2=3\n"
        "Convolution conv 1 1 in0 c0 0=4 1=1 5=1 6=12\n"
        "Pooling pool 1 1 c0 out0 0=1 4=1\n"
    )
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(12).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    binfile.write_bytes(np.zeros(1, np.uint32).tobytes() + weights.tobytes() + bias.tobytes())  # 0: float32 weights
    return {"param": param, "bin": binfile}


def test_extractors_in_threads_share_one_net_at_the_split_thread_count(test_env: dict[str, str], tmp_path: Path) -> None:
    ctx = make_context(test_env, overrides=["ncnn.vulkan=off"])
    files = tiny_net(tmp_path, ctx.config.input.size)
    x = np.random.default_rng(1).integers(0, 255, (1, *ctx.config.input.size, 3), dtype=np.uint8)
    with NcnnRuntime(ctx.config, files) as rt:
        want = rt.infer(x)
        assert want.shape == (1, 4)
        own = rt.thread_count()
        for n in (1, 3):
            workers = rt.concurrent_workers(n)
            per = rt.worker_threads(n)
            assert len({id(w) for w in workers}) == 1 and workers[0].thread_count() == per  # one Net for all
            assert per == (own if n == 1 else max(1, min(own, cores() // n))) and (workers[0] is rt) == (per == own)
            assert isinstance(workers[0], NcnnRuntime) and workers[0].net.opt.num_threads == per
            np.testing.assert_allclose(workers[0].infer(x), want, rtol=1e-5)  # the split Net answers the same
            rt.release_workers(workers)
            p = throughput_point(rt, x, n, 0.1)
            assert p.mechanism == f"{n} thread{'s' if n > 1 else ''}, an Extractor each on one Net"
            assert p.threads_per_worker == per and p.inferences >= 1 and p.fps > 0 and 0 < p.p50 <= p.p90 <= p.p99
        assert rt.active
