"""The result schema every backend writes and the report reads (versioned)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .safe_names import check_key
from .strict_json import json_text

RESULT_SCHEMA = "modelport.result/1"
REPORT_SCHEMA = "modelport.report/1"
Status = Literal["ok", "skipped", "failed"]


def _display_text(text: str | None) -> str | None:
    """A name shown in reports (a model's): one line of printable text; never a path (merge slugs it)."""
    if text is not None and (len(text) > 200 or any(c < " " or c == "\x7f" for c in text)):
        raise ValueError(f"{text[:40]!r} is not one line of printable text (at most 200 characters)")
    return text


# Keys become file and folder names (results/<key>.json, merged/<model>/<device>/): checked on every read and write.
Key = Annotated[str, AfterValidator(check_key)]
DeviceKey = Annotated[str | None, AfterValidator(lambda v: None if v is None else check_key(v, "device key"))]
DisplayName = Annotated[str | None, AfterValidator(_display_text)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LatencyStats(Model):
    warmup: int
    runs: int
    min: float
    median: float
    mean: float
    p90: float
    p99: float
    max: float
    std: float
    fps: float  # 1000 / median


class ImageAgreement(Model):
    image: str
    top1_match: bool
    top5_overlap: float
    cosine: float
    max_abs_diff: float
    mse: float


class DrawnBox(Model):
    """One box as the report draws it: corners in the original photo's pixels, class index, its name, score."""

    box: list[float] = Field(min_length=4, max_length=4)
    cls: int = Field(ge=0)
    label: DisplayName = None
    score: float


class PhotoBoxes(Model):
    """The headline photo's boxes above [detect] agreement_score, the row's and its source's (the reference
    panel), so a report (merged from elsewhere, without the photo) can draw them side by side."""

    image: DisplayName = None  # the photo's file name
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    boxes: list[DrawnBox] = Field(default=[], max_length=100)
    source: list[DrawnBox] = Field(default=[], max_length=100)


class ClassAP(Model):
    """COCO AP@[.5:.95] of one annotated category on the eval photos (pycocotools' per-category precision)."""

    name: DisplayName = None
    instances: int = Field(ge=0)  # its annotations on the eval photos
    ap: float = Field(ge=0, le=1)


class DetectAgreement(Model):
    """A detector row's boxes against the source's on the same photos (modelport.tasks.detect), and COCO
    mAP when [detect] annotations names the photos' annotations."""

    source_boxes: int  # above [detect] agreement_score, over all photos
    row_boxes: int
    matched: int  # same class, IoU >= [detect] match_iou, one to one
    precision: float
    recall: float
    f1: float
    mean_iou: float
    score_drift_mean: float
    score_drift_max: float
    map: float | None = None  # COCO mAP@[.5:.95] of the row's boxes
    ap50: float | None = None
    source_map: float | None = None  # the source model's, on the same photos and annotations
    source_ap50: float | None = None
    map_note: str | None = None  # why there is no mAP
    class_ap: list[ClassAP] | None = None  # the categories present on the eval photos, most instances first
    photo: PhotoBoxes | None = None


class Agreement(Model):
    images: int
    top1: float  # fraction of images whose top-1 equals the reference's
    top5_overlap: float
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float
    mse: float
    per_image: list[ImageAgreement] = []
    # A detector's verdict: its boxes. The fields above then compare its raw outputs (every output
    # flattened, by name): a diagnostic, not what its floors judge.
    detect: DetectAgreement | None = None


class TopK(Model):
    image: str
    indices: list[int]
    labels: list[str]
    scores: list[float]


class Headline(Model):
    image: str
    label: str
    confidence: float


class SpeedCheck(Model):
    """An INT8 row's speed floor: its kept variant against the FP32 twin in the recovery search's
    interleaved rounds (timing.meets_speedup). Beside ``status``, not in it: a slow model still
    agrees with the reference and runs; ``slow`` is what every view shows instead of a plain ok."""

    twin: str | None = None  # the FP32 row's key
    min_speedup: float
    speedup: float | None = None  # median over the rounds of FP32 ms / INT8 ms; None: not measured
    slow: bool | None = None  # True: below min_speedup; None: not measured
    rounds: int = 0
    rounds_below: int = 0  # rounds whose own ratio missed min_speedup (meets_speedup allows one of three or more)
    note: str = ""  # how it was measured, or why it was not
    why: str = ""  # slow: what the faster variants lacked (the accuracy floors), or that none was faster


class ThroughputPoint(Model):
    """Inferences per second with ``concurrency`` requests in flight, and the latency each one saw."""

    concurrency: int
    mechanism: str  # how the requests ran, e.g. "2 concurrent run() calls on one InferenceSession"
    threads_per_worker: int | None = None  # CPU threads each request's inference used (None: not a CPU count)
    seconds: float  # wall time of the timed window
    inferences: int
    fps: float  # inferences / seconds
    p50: float  # ms per inference, as each request saw it
    p90: float
    p99: float


class ColdStart(Model):
    """A fresh process per row: load and first inference, and its memory (bytes, RSS high-water)."""

    pid: int  # the fresh process's: not the benchmark's
    load_ms: float
    first_infer_ms: float
    inferences: int  # run after the first, before the peak is read
    baseline_rss_bytes: int  # RSS with the toolchain imported and the input ready, no model
    peak_rss_bytes: int  # RSS high-water from there, after load and the inferences

    @property
    def model_rss_bytes(self) -> int:
        return self.peak_rss_bytes - self.baseline_rss_bytes


class FrameTime(Model):
    """Median ms per stage of a whole frame, as an application runs it: decode the file, preprocess,
    infer, postprocess (top-5); ``total`` is the median of the per-frame sums."""

    frames: int
    decode: float
    preprocess: float
    infer: float
    postprocess: float
    total: float


LayerCategory = Literal["quantize", "dequantize", "reorder", "other"]


class LayerTime(Model):
    name: str  # the ONNX layer (head node name) where the toolchain's name maps to one, else the toolchain's
    onnx: bool  # whether ``name`` is an ONNX layer name
    op: str  # the toolchain's op or kernel type
    category: LayerCategory
    ms: float  # mean per inference, under the profiler
    share: float  # of the summed time of every layer


class LayerProfile(Model):
    """Per-layer time from the toolchain's own profiler (the slowest layers, and the share of quantize /
    dequantize / reorder work), or ``reason`` why the toolchain gives none: never an estimate."""

    how: str = ""  # the hook and its runs
    runs: int = 0
    layers: int = 0  # layers the profiler timed
    total_ms: float | None = None  # their summed mean time per inference (profiler overhead included)
    slowest: list[LayerTime] = []  # slowest first
    shares: dict[str, float] = {}  # quantize / dequantize / reorder -> share of total_ms
    reason: str | None = None


class SustainedWindow(Model):
    start_s: float  # from the sustained run's start
    count: int
    p50: float
    p99: float


class Sustained(Model):
    """Batch-1 inferences back to back for ``seconds``, summarized per window of ``window_s``: whether the
    row drifts or throttles over time. ``flag`` says why its numbers are unreliable, None when they hold."""

    seconds: float
    window_s: float
    windows: list[SustainedWindow]
    first_p50: float
    last_p50: float
    first_p99: float
    last_p99: float
    drift: float  # last p50 / first p50
    throttled: int | None  # thermal throttle events during the run; None = not exposed here
    mhz_before: str
    mhz_after: str
    load: dict[str, float] = {}
    under_load: str | None = None
    flag: str | None = None


class RunConditions(Model):
    """The CPU's state around a row's measurements; a value the machine does not expose is the text
    "not exposed here" (machine.NOT_EXPOSED), never a guess."""

    governor: str
    cur_mhz: str
    max_mhz: str
    smt: str
    thermal_c: dict[str, float] | str
    thermal_c_after: dict[str, float] | str
    load_before: float
    load_after: float
    throttled: str  # "no", "yes: ...", or not exposed


class BackendResult(Model):
    schema_version: str = Field(RESULT_SCHEMA, alias="schema")
    key: Key  # e.g. "onnx-int8": also the results file name
    backend: str  # e.g. "onnxruntime"
    precision: str  # fp32 / fp16 / int8
    name: str  # display name, e.g. "ONNX INT8"
    env: str  # toolchain environment it ran in
    status: Status = "ok"
    reason: str | None = None
    device: str = "cpu"  # what ran it on the machine: cpu, cuda:0, rknn-simulator (...)
    # A result's identity across machines and models: (model, key, device_key); run_id orders runs.
    device_key: DeviceKey = None
    run_id: str | None = None
    model: DisplayName = None  # the source model's name ([model] name)
    tool_versions: dict[str, str] = {}
    settings: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    model_sha256: str | None = None  # of the source model every backend derives from
    # artifact -> its inputs -> ... -> the source model, each {"path", "sha256"} as recorded when made
    source_chain: list[dict[str, str]] = []
    preprocessing: str | None = None  # InputSpec.signature
    input: dict[str, str] = {}  # layout, dtype
    artifact: str | None = None
    artifact_sha256: str | None = None
    size_bytes: int | None = None
    load_ms: float | None = None
    latency_ms: LatencyStats | None = None
    latency_note: str | None = None  # why there is no latency (simulator, skipped, ...)
    extra_timings: dict[str, LatencyStats] = {}  # e.g. GPU time from CUDA events
    # A detector's decode + NMS per photo, apart from the model's latency (whatever runs the model, this is numpy)
    postprocess_ms: LatencyStats | None = None
    load_avg: dict[str, float] = {}  # 1-min load average before/after: a busy machine explains a slow number
    under_load: str | None = None  # set when the load average exceeded the cores: the latency is not trustworthy
    unsteady: str | None = None  # set when the row's own timings disagree (timing.unsteady): the median is one mode
    outputs_sha256: str | None = None  # of results/<key>.npy: the reader checks the pair belongs together
    topk: list[TopK] = []
    agreement: Agreement | None = None
    agreement_note: str | None = None  # why agreement is missing from an ok row (no or stale reference)
    speed: SpeedCheck | None = None  # INT8 rows with a recovery record: the speed floor's verdict
    headline: Headline | None = None
    # Beyond batch-1 latency (each optional: older results and rows that skip them have none)
    throughput: list[ThroughputPoint] = []
    cold_start: ColdStart | None = None
    frame_ms: FrameTime | None = None
    layer_profile: LayerProfile | None = None
    sustained: Sustained | None = None
    conditions: RunConditions | None = None
    notes: list[str] = []
    created_utc: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def fps(self) -> float | None:
        return self.latency_ms.fps if self.latency_ms else None

    @property
    def best_throughput(self) -> ThroughputPoint | None:
        return max(self.throughput, key=lambda t: t.fps, default=None)

    def dump(self) -> str:
        # not model_dump_json: it writes NaN and infinities as null, silently
        return json_text(self.model_dump(mode="json", by_alias=True))
