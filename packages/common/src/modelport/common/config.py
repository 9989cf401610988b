"""modelport.toml: one validated config, with env and CLI overrides.

Unknown or mistyped keys are rejected with the key's name and the closest valid
key, so a typo never silently falls back to a default. Every number is finite and bounded, checked
at load: a bad value is one line naming its key, never a crash or a wrong row later.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .contract import Contract, resolve_input
from .errors import ConfigError
from .preprocess import InputSpec

CONFIG_ENV = "MODELPORT_CONFIG"
DEFAULT_CONFIG_NAME = "modelport.toml"


class Section(BaseModel):
    # allow_inf_nan=False: TOML spells nan and inf, and neither is a usable setting (nor valid JSON).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# Every thread count means threads used: onnxruntime's 0 ("pick for me") would record a row at an unknown count.
Threads = Annotated[int, Field(ge=1)]


class ModelConfig(Section):
    name: str = "mobilenet_v2_1.0_224"
    # What the model does, as its contract says (`init` writes it): a different value is refused at load.
    task: Literal["classify", "detect"] = "classify"
    # The source model and labels (env MODELPORT_MODEL / MODELPORT_LABELS win): modelport.toml points
    # at the copies shipped in data/models/.
    path: Path | None = None
    labels: Path | None = None
    # download = true: fetch the official model from url instead of path (its member hash is pinned).
    download: bool = False
    url: str = "https://storage.googleapis.com/download.tensorflow.org/models/tflite_11_05_08/mobilenet_v2_1.0_224.tgz"
    member: str = "./mobilenet_v2_1.0_224.tflite"  # the file to take out of the archive
    # Published sha256 of the member (two independent sources) and of the labels; the archive's own hash
    # has a single source, so it is recorded, and enforced only when set here.
    member_sha256: str | None = "9f3bc29e38e90842a852bfed957dbf5e36f2d97a91dd17736b1e5c0aca8d3303"
    sha256: str | None = None  # of the archive (or of the model file, when url is not an archive)
    labels_url: str = "https://storage.googleapis.com/download.tensorflow.org/data/ImageNetLabels.txt"
    labels_sha256: str | None = "536feacc519de3d418de26b2effb4d75694a8c4c0063e36499a46fa8061e2da9"


_Stride = Annotated[int, Field(ge=1, le=1024)]
_PriorSize = Annotated[float, Field(gt=0, le=100_000)]
_Variance = Annotated[float, Field(gt=0, le=10)]


class DetectConfig(Section):
    """How a detector's outputs become boxes in the original photo (modelport.tasks.detect).

    Read only when [model] task = "detect". yolox: one [1, N, 5 + C] raw head, decoded on the grids of
    ``strides``; ssd: raw regressions + scores, decoded with the priors of ``strides`` x ``min_sizes`` and
    ``variances``; boxes_scores: boxes already decoded in the model.
    """

    decoder: Literal["yolox", "ssd", "boxes_scores"] = "yolox"
    # Two-output layouts: the model's output names of the boxes [1, N, 4] and the scores [1, N, C].
    boxes_output: str | None = None
    scores_output: str | None = None
    strides: list[_Stride] = Field([8, 16, 32], min_length=1, max_length=8)
    # ssd: prior box sizes in input pixels, one list per stride (square priors centred on each cell).
    min_sizes: list[list[_PriorSize]] = Field([], max_length=8)
    variances: tuple[_Variance, _Variance] = (0.1, 0.2)  # ssd: centre, size
    # boxes_scores: the corner (x1, y1, x2, y2) or centre form, in 0..1 of the input or in input pixels.
    box_format: Literal["xyxy", "cxcywh"] = "xyxy"
    normalized: bool = True
    background: bool = False  # score column 0 is the background of a softmax, not a class
    score_threshold: float = Field(0.01, ge=0, le=1)  # boxes kept (COCO mAP wants the low-score ones too)
    nms_iou: float = Field(0.65, gt=0, le=1)
    max_boxes: int = Field(100, ge=1, le=10_000)
    class_agnostic: bool = False  # NMS across classes (one box per object whatever its class)
    # Agreement with the source: boxes above agreement_score matched one to one, same class, IoU >= match_iou.
    agreement_score: float = Field(0.3, ge=0, le=1)
    match_iou: float = Field(0.5, gt=0, le=1)
    # Geometry ([input] resize is the filter): letterbox = keep the aspect ratio and pad; stretch = plain resize.
    fit: Literal["letterbox", "stretch"] = "letterbox"
    pad_value: int = Field(114, ge=0, le=255)
    align: Literal["top-left", "center"] = "top-left"
    # COCO instances json of the eval photos (by file name): every row gets mAP@[.5:.95] and AP50 from it.
    annotations: Path | None = None

    @property
    def geometry(self) -> str:
        """What of [detect] shapes the model's input: part of a detector's preprocessing signature."""
        return f"{self.fit}/pad{self.pad_value}/{self.align}"

    @model_validator(mode="after")
    def _priors_per_stride(self) -> DetectConfig:
        if self.decoder == "ssd" and len(self.min_sizes) != len(self.strides):
            raise ValueError(f"ssd needs one min_sizes list per stride: {len(self.strides)} strides, {len(self.min_sizes)} lists")
        return self


class ImagesConfig(Section):
    eval: Path = Path("data/images")
    calibration: Path = Path("data/images/calibration")
    calibration_limit: int = Field(50, ge=1)
    # INT8 ranges set on fewer photos fit those photos: rknn_model_zoo calibrates on 20, Ultralytics warns
    # below 300. Measured here (MobileNetV2, ONNX percentile): 13 COCO photos gave cosine min 0.78 on the
    # eval photos, the same photos with their crops 0.96. Below this, init, every INT8 step and the report warn.
    calibration_min: int = Field(20, ge=1)
    headline: str = "grace_hopper.jpg"  # the image whose top-1 the report shows


class BenchConfig(Section):
    warmup: int = Field(20, ge=0)
    runs: int = Field(200, ge=1)
    # Beyond batch-1 latency, each per row and each bounded so a CI run stays short (2 cores, ~30 min for all):
    # throughput swept over concurrency levels ([] = 1, 2 and this machine's cores), each timed this long
    throughput: bool = True
    concurrency: list[Annotated[int, Field(ge=1, le=256)]] = Field([], max_length=16)
    throughput_seconds: float = Field(2.0, gt=0, le=600)
    # load + first inference + peak memory in one fresh process per row, after this many more inferences
    cold_start: bool = True
    cold_start_runs: int = Field(10, ge=0, le=100_000)
    # decode + preprocess + infer + postprocess per frame, cycling over the eval images this many frames
    frame_runs: int = Field(20, ge=0, le=100_000)
    # per-layer time from the toolchain's profiler over this many runs (a few seconds a row), where it has one
    layer_profile: bool = True
    layer_profile_runs: int = Field(20, ge=1, le=100_000)
    # batch-1 inferences back to back this long (0 = off), p50/p99 per window: drift or throttling over time
    sustained_seconds: float = Field(0.0, ge=0, le=3600)
    sustained_window: float = Field(2.0, gt=0, le=600)

    @field_validator("sustained_seconds")
    @classmethod
    def _off_or_long_enough(cls, seconds: float) -> float:
        if 0 < seconds < 5:  # shorter shows no drift, only noise
            raise ValueError(f"0 (off) or 5..3600 seconds, not {seconds:g}")
        return seconds

    @model_validator(mode="after")
    def _two_windows(self) -> BenchConfig:
        if self.sustained_seconds and self.sustained_window * 2 > self.sustained_seconds:
            raise ValueError(
                f"sustained_window {self.sustained_window:g} s leaves fewer than 2 windows in {self.sustained_seconds:g} s"
            )
        return self


class AccuracyConfig(Section):
    """Floors (not targets) every converted model must meet against the reference, per image set.

    fp_*: FP32/FP16 conversions; int8_*: INT8 ones. top1 = fraction of images whose top-1 agrees;
    cosine = cosine similarity of the output vectors (min over images, and their mean).
    """

    fp_top1_min: float = Field(1.0, ge=0, le=1)
    fp_cosine_min: float = Field(0.999, ge=-1, le=1)
    int8_top1_min: float = Field(0.90, ge=0, le=1)
    int8_cosine_min: float = Field(0.95, ge=-1, le=1)
    int8_cosine_mean_min: float = Field(0.98, ge=-1, le=1)
    # Detectors ([model] task = "detect") are judged by their boxes: F1 of a row's boxes matched to the
    # source's, and COCO mAP@[.5:.95] against the source's own mAP on the same photos (with annotations).
    detect_fp_f1_min: float = Field(0.99, ge=0, le=1)
    detect_fp_map_drop_max: float = Field(0.005, ge=0, le=1)  # mAP at least the source's minus this
    detect_int8_f1_min: float = Field(0.90, ge=0, le=1)
    detect_int8_map_ratio_min: float = Field(0.95, ge=0, le=1)  # mAP at least this fraction of the source's


class ConvertConfig(Section):
    # tflite->onnx converter; "auto" converts with both, verifies both and keeps the faster.
    onnx_converter: Literal["auto", "tflite2onnx", "tf2onnx"] = "auto"
    opset: int = Field(13, ge=11)
    verify: bool = True


class QuantizationConfig(Section):
    """onnxruntime.quantization static QDQ settings (ONNX INT8), and the recovery search of every INT8 backend."""

    activation_type: Literal["uint8", "int8"] = "uint8"  # U8S8 is ~2.5x faster than S8S8 on x86
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = True
    # percentile (99.999) clips rare activation outliers: min cosine 0.968 vs 0.956 for minmax on the shared images
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "percentile"
    # percentile/entropy: onnxruntime keeps every activation of every calibration image until it builds
    # its histograms (~45 MB per image for MobileNetV2 at 224x224; 500 images took a 24 GB machine down).
    # Those methods get at most this many images (~1.5 GB at 32); minmax streams and takes them all.
    histogram_calibration_limit: int = Field(32, ge=1)
    # ONNX layers (node names of onnx/model.onnx, as analysis/*.json lists them) kept in float.
    nodes_to_exclude: list[str] = []
    # An INT8 model below the [accuracy] floors: search the toolchain's calibration methods, then
    # keep its worst layers in float, within recover_minutes; keep the fastest variant that meets the
    # floors (common/recovery.py). false: a model below the floors fails as it is.
    recover: bool = True
    recover_minutes: float = Field(10.0, gt=0)
    recover_max_float_layers: int = Field(32, ge=1)
    recover_rounds: int = Field(5, ge=1)  # interleaved timing rounds over the variants and the FP32 twin
    # The calibration methods the search tries after the configured one, by each toolchain's own names
    # (e.g. ["mmse"] for RKNN, ["mixed+fbc"] for NNCF); a toolchain tries those it has. Default: all of them.
    # One RKNN method can take most of an hour on a big model: this is how a user who knows skips the rest.
    recover_methods: list[str] | None = None
    # Speed is a floor too: the kept INT8 variant should run min_speedup times as fast as its FP32 twin in
    # those rounds (timing.meets_speedup); the search prefers variants that do. Below it, speed_floor =
    # "report" keeps the variant flagged slow (a toolchain's INT8 may simply be slow on this machine);
    # "fail" fails the step. 1.0 = no slower than FP32; below 1.0 tolerates a slower INT8.
    min_speedup: float = Field(1.3, gt=0)
    speed_floor: Literal["report", "fail"] = "report"

    def quantizer_settings(self) -> dict[str, Any]:
        """What onnxruntime.quantization reads (the recovery knobs are not part of a model's identity)."""
        return self.model_dump(
            exclude={
                "recover",
                "recover_minutes",
                "recover_max_float_layers",
                "recover_rounds",
                "recover_methods",
                "min_speedup",
                "speed_floor",
            }
        )


class TfliteConfig(Section):
    threads: Threads = 2
    xnnpack: bool = True


class OnnxruntimeConfig(Section):
    intra_op_threads: Threads = 2
    inter_op_threads: Threads = 1
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"


class NcnnConfig(Section):
    """ONNX -> ncnn (pnnx) FP32, ncnn INT8 and the ncnn runtime (envs/ncnn)."""

    threads: Threads = 2
    # Also timed at these thread counts (results extra_timings "threads_N"): 1 vs 2 threads side by side.
    extra_threads: list[Threads] = [1]
    fp16_weights: bool = False  # pnnx fp16=1: half-size FP32 .bin (cosine 0.99996 instead of 0.9999998)
    # ncnn Option flags. FP32 means FP32: fp16 storage/arithmetic stay off unless asked for.
    fp16_storage: bool = False
    fp16_packed: bool = False
    fp16_arithmetic: bool = False
    packing_layout: bool = True
    winograd: bool = True
    sgemm: bool = True
    # auto = Vulkan only on a real GPU (not Mesa's llvmpipe CPU device); on = any Vulkan device; off = CPU.
    vulkan: Literal["auto", "on", "off"] = "auto"
    # INT8 (`convert ncnn-int8`). tools: official = ncnnoptimize/ncnn2table/ncnn2int8 from PATH;
    # builtin = modelport's own (no C++ tools needed); auto = official when on PATH and the method is one
    # ncnn2table has (kl, aciq), else builtin.
    tools: Literal["auto", "official", "builtin"] = "auto"
    # minmax passes the INT8 floor on MobileNetV2 (kl/aciq clip the ReLU6 activations: cosine min 0.73/0.63).
    calibration_method: Literal["minmax", "kl", "aciq", "eq"] = "minmax"  # eq: ncnn/eq.py, builtin tools only
    bias_correction: bool = True  # builtin: remove the mean shift weight rounding causes (min cosine 0.956 -> 0.977)
    requantize: bool = True  # builtin: int8 conv -> int8 conv without a float round trip (as ncnn2int8 fuses)
    # Depthwise convs in INT8 too. Off: they stay FP32 ('#' lines in model.table, ncnn's mixed precision)
    # because ncnn's x86 int8 depthwise kernels are slower than its FP32 ones. MobileNetV2, quiet 2-core x86,
    # median ms 2 / 1 threads: FP32 11.4 / 14.9, INT8 without depthwise 9.9 / 15.4, all INT8 11.6 / 20.1
    # (same accuracy: cosine min 0.978 vs 0.977).
    int8_depthwise: bool = False
    # Layers kept in float: ONNX layer names (node names of onnx/model.onnx, as analysis/*.json lists
    # them) or ncnn layer names; the recovery search adds to these.
    float_layers: list[str] = []


class RknnConfig(Section):
    """ONNX -> RKNN (rknn-toolkit2 2.5.0) for Rockchip NPUs: x86 simulator, board via adb (envs/rknn).

    mean/std come from [input], never from here: one preprocessing for every backend.
    """

    # The chips rknn-toolkit2 2.5.0 builds for; a Literal so a typo fails at config load, before the toolkit starts.
    target_platform: Literal[
        "rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rk2118", "rv1126b", "rv1106", "rv1106b", "rv1103", "rv1103b"
    ] = "rk3588"
    quantized_dtype: Literal["w8a8", "w8a16", "w16a16i_dfp", "w4a16"] = "w8a8"  # what 2.5.0's RKNN.config documents
    # normal: 12/12 top-1, cosine min 0.981 / mean 0.997 on the shared images in ~4 s (rk3588, channel);
    # mmse: min 0.997 / mean 0.999 but ~100 s build; kl_divergence: 11/12, min 0.79.
    quantized_algorithm: Literal["normal", "mmse", "kl_divergence"] = "normal"
    quantized_method: Literal["channel", "layer"] = "channel"  # layer: 11/12, min 0.89 (depthwise weights vary per channel)
    optimization_level: int = Field(3, ge=0, le=3)
    # The INT8 search's "+auto_hybrid" methods: build(auto_hybrid=True) keeps in float16 each layer whose cosine
    # against float falls below this (the toolkit's default, 0.98); 1.0 floats every layer it can.
    auto_hybrid_cos_thresh: float = Field(0.98, gt=0, le=1)
    fp16: bool = True  # also build the unquantized FP16 model (float floor: every top-1, cosine >= 0.999)
    # A Caffe source: the toolkit reads its .prototxt + .caffemodel (load_caffe), one conversion fewer than
    # the ONNX (RFB-320 FP16 vs OpenCV: cosine 0.9999994; INT8 normal: 0.993 min over the COCO photos). false: the ONNX.
    load_caffe: bool = True
    # accuracy_analysis images (eval image names); empty = the INT8 simulation's lowest-cosine image.
    analysis_images: list[str] = []
    worst_layers: int = Field(10, ge=1)  # how many layers the report lists
    keep_snapshots: bool = False  # accuracy_analysis tensor dumps: ~340 MB per image, parsed then deleted unless set
    # Hybrid quantization: the toolkit proposes float16 layers from this many calibration images (~8 s each);
    # on MobileNetV2 12 images raise cosine min 0.981 -> 0.989, 4 images lower it to 0.970.
    hybrid_proposal: bool = True
    hybrid_proposal_images: int = Field(12, ge=1)
    hybrid_float16_layers: list[str] = []  # tensor names (see rknn/accuracy/analysis.json) always kept in float16
    device_id: str | None = None  # adb serial of a board (`rknn board --target-device` overrides)
    core_mask: Literal["auto", "0", "1", "2", "0_1", "0_1_2", "all"] = "auto"  # NPU cores (rk3588/rk3576)


class TensorrtConfig(Section):
    """ONNX -> TensorRT engines and their runtime (envs/tensorrt, needs a CUDA GPU)."""

    device: int = Field(0, ge=0)  # CUDA device index the engines are built for and run on
    workspace_mb: int = Field(1024, ge=16)  # builder workspace memory pool limit
    builder_optimization_level: int = Field(3, ge=0, le=5)  # TensorRT's default; 5 searches longest
    timing_cache: bool = True  # keep tactic timings in tensorrt/timing.cache: rebuilds skip re-timing
    # INT8: "qdq" = explicit quantization of qdq_onnx (TensorRT's recommended path; needs symmetric
    # int8 Q/DQ); "calibrate" = entropy calibration of the FP32 ONNX on [images] calibration;
    # "auto" = qdq when TensorRT accepts that model, else calibrate, saying why.
    int8_mode: Literal["auto", "qdq", "calibrate"] = "auto"
    qdq_onnx: str | None = None  # in the artifact store; unset: the one `convert onnx-int8-tensorrt` makes
    int8_fp16_fallback: bool = True  # calibrate: layers TensorRT keeps out of INT8 may run FP16, as trtexec --int8 --fp16
    max_batch: int = Field(1, ge=1)  # optimisation profile max, used only if the ONNX batch is dynamic


class OpenvinoConfig(Section):
    """The OpenVINO CPU runtime (envs/openvino): the compile_model properties of both IRs, and NNCF INT8."""

    threads: Threads | None = None  # INFERENCE_NUM_THREADS; None: [tflite] threads (rows compare at one count)
    # INFERENCE_PRECISION_HINT. On Xeons with AMX the CPU plugin's own default is bf16 (cosine min 0.9986
    # vs the reference, under the FP32 floor); f32 gives 1.0000, and the layers NNCF leaves in float run in f32.
    inference_precision: Literal["f32", "bf16", "f16"] = "f32"
    performance_hint: Literal["latency", "throughput"] = "latency"  # PERFORMANCE_HINT
    num_streams: int | None = Field(None, ge=1)  # NUM_STREAMS; None: what the performance hint picks
    cpu_pinning: bool | None = None  # ENABLE_CPU_PINNING; None: the plugin's default
    # NNCF INT8 (`convert openvino-int8`): the QuantizationPreset (mixed = asymmetric activations), and
    # layers kept in float (ONNX layer names of onnx/model.onnx, as analysis/*.json lists them, or OpenVINO
    # op names; they go to NNCF's ignored_scope). The recovery search tries the other preset and adds layers.
    preset: Literal["performance", "mixed"] = "performance"
    float_layers: list[str] = []


class MnnConfig(Section):
    """The MNN CPU runtime and MNN INT8 (envs/mnn): the session's schedule of both models, and the calibration."""

    threads: Threads | None = None  # numThread; None: [tflite] threads (rows compare at one count)
    # MNN's BackendConfig modes. precision normal is fp32 on x86; low lets MNN use fp16/bf16 where the CPU has it.
    precision: Literal["normal", "high", "low", "low_bf16"] = "normal"
    memory: Literal["normal", "high", "low"] = "normal"
    power: Literal["normal", "high", "low"] = "normal"
    # INT8 (`convert mnn-int8`, MNN's nn.compress.train_quant over the calibration set): how activation ranges
    # are updated across the calibration images, per-tensor or per-channel activation scales, and whether the
    # convolution on the raw input stays float. MobileNetV2, the 50 shipped calibration crops: maximum with
    # float_input cosine min 0.958 / mean 0.991, without 0.794 / 0.976; moving_average 0.43 / 0.81 either way.
    # The recovery search tries the other combinations (modelport.mnn.convert METHODS).
    scale_update: Literal["maximum", "moving_average"] = "maximum"
    feature_scale: Literal["per_tensor", "per_channel"] = "per_tensor"
    float_input: bool = True


class Config(Section):
    model: ModelConfig = ModelConfig()
    input: InputSpec = InputSpec()
    images: ImagesConfig = ImagesConfig()
    bench: BenchConfig = BenchConfig()
    convert: ConvertConfig = ConvertConfig()
    accuracy: AccuracyConfig = AccuracyConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    tflite: TfliteConfig = TfliteConfig()
    onnxruntime: OnnxruntimeConfig = OnnxruntimeConfig()
    ncnn: NcnnConfig = NcnnConfig()
    rknn: RknnConfig = RknnConfig()
    tensorrt: TensorrtConfig = TensorrtConfig()
    openvino: OpenvinoConfig = OpenvinoConfig()
    mnn: MnnConfig = MnnConfig()
    detect: DetectConfig = DetectConfig()

    _source: Path | None = PrivateAttr(None)
    _contract: Contract | None = PrivateAttr(None)

    @property
    def detector(self) -> DetectConfig | None:
        """[detect] when the model is a detector, else None: the one test every task branch makes."""
        return self.detect if self.model.task == "detect" else None

    @property
    def preprocessing(self) -> str:
        """What shapes every input tensor: [input]'s signature, and a detector's letterbox geometry."""
        det = self.detector
        return self.input.signature if det is None else f"{self.input.signature};{det.geometry}"

    @property
    def source(self) -> Path | None:
        """The file this config was read from (None: built-in defaults)."""
        return self._source

    @property
    def contract(self) -> Contract | None:
        """The source model's contract this config was completed with (None: not yet fetched)."""
        return self._contract

    def with_contract(self, contract: Contract, model: Path | str) -> Config:
        """This config with [input] completed by the model's contract (see modelport.common.contract)."""
        self._check_task(contract, model)
        cfg = self.model_copy(update={"input": resolve_input(self.input, contract, self.source, model)})
        cfg._contract = contract
        return cfg

    def _check_task(self, contract: Contract, model: Path | str) -> None:
        """[model] task and the [detect] output names agree with the model, or one ConfigError naming both."""
        where = self.source or "config"
        if self.model.task != contract.task:
            raise ConfigError(
                f'[model] task = "{self.model.task}" but the model {model} is a '
                f"{'detector' if contract.task == 'detect' else 'classifier'} (`modelport init MODEL` writes its config)",
                where,
            )
        if contract.task != "detect":
            return
        names = [o.name for o in contract.outputs]
        for key in ("boxes_output", "scores_output"):
            value = getattr(self.detect, key)
            if value is not None and value not in names:
                raise ConfigError(f"[detect] {key} = {value!r} is not an output of the model {model} ({names})", where)


_ENV_OVERRIDES = {
    "MODELPORT_MODEL": ("model", "path"),
    "MODELPORT_LABELS": ("model", "labels"),
    "MODELPORT_IMAGES": ("images", "eval"),
    "MODELPORT_CALIBRATION": ("images", "calibration"),
}
_PATH_KEYS = {("model", "path"), ("model", "labels"), ("images", "eval"), ("images", "calibration"), ("detect", "annotations")}


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError("config file not found", p)
        return p
    if os.environ.get(CONFIG_ENV):
        return find_config(os.environ[CONFIG_ENV])
    p = Path.cwd() / DEFAULT_CONFIG_NAME
    return p if p.is_file() else None


def load_config(
    path: str | Path | None = None, overrides: list[str | tuple[str, Any]] | None = None, defaults: bool = False
) -> Config:
    """Read modelport.toml (or defaults), apply env vars, then overrides.

    An override is ``"section.key=value"`` (value parsed as TOML, else a bare string)
    or a ``("section.key", value)`` pair. ``defaults``: no config file at all (built-in
    defaults, relative paths from the cwd), as `init` starts from.
    """
    source = None if defaults else find_config(path)
    data: dict[str, Any] = {}
    if source is not None:
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8-sig"))  # -sig: editors on Windows add a BOM
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"not valid TOML: {e}", source) from e
    for env, (sec, key) in _ENV_OVERRIDES.items():
        if os.environ.get(env):
            data.setdefault(sec, {})[key] = str(Path(os.environ[env]).resolve())
    try:
        Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e), source) from None
    # Validated once without the overrides, so an error here is the override's, not the file's.
    for item in overrides or []:
        _apply_override(data, item)
        try:
            Config.model_validate(data)
        except ValidationError as e:
            shown = item if isinstance(item, str) else f"{item[0]}={item[1]}"
            raise ConfigError(f"override -o {shown}: {_explain(e)}") from None
    cfg = Config.model_validate(data)
    # Relative paths are relative to the config file (env vars were made absolute above).
    base = source.parent if source else Path.cwd()
    for sec, key in _PATH_KEYS:
        section = getattr(cfg, sec)
        value = getattr(section, key)
        if value is not None and not value.is_absolute():
            setattr(section, key, (base / value).resolve())
    cfg._source = source
    return cfg


def _apply_override(data: dict[str, Any], item: str | tuple[str, Any]) -> None:
    if isinstance(item, tuple):
        dotted, value = item
    elif "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    else:
        dotted, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # bare strings need no quotes on the command line
    if (tuple(dotted.strip().split(".")) in _PATH_KEYS) and value:
        value = str(Path(value).resolve())  # a path given on the command line is relative to the cwd
    *parents, leaf = dotted.strip().split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted.strip()}: {p!r} is a value, not a section")
    node[leaf] = value


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return [k for k, f in model.model_fields.items() if not f.exclude]


# pydantic's bound errors, said as the user wrote the bound
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _key(loc: tuple[Any, ...]) -> str:
    """``("ncnn", "extra_threads", 0)`` -> ``ncnn.extra_threads[0]``: a list item as TOML users index it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _explain(e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(err["loc"])
        key = _key(loc)
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _valid_keys(Config, loc), n=1)
            hint = f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?)" if close else ""
            msgs.append(f"unknown key {key!r}{hint}")
            continue
        bound = _BOUNDS.get(err["type"])
        if bound:
            limit = next(iter(err["ctx"].values()))
            msg = f"must be {bound} {int(limit) if isinstance(limit, float) and limit.is_integer() else limit}"
        elif err["type"] == "finite_number":
            msg = "must be a finite number"
        else:
            msg = err["msg"]
        value = err.get("input")
        got = f" (got {value!r})" if isinstance(value, int | float | str) else ""
        msgs.append(f"{key}: {msg}{got}")
    return "; ".join(msgs)
