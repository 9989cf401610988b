"""`modelport init MODEL --out CONFIG`: a commented config for a model, from what the model says.

The contract (size, layout, dtype, input quantization, output width) is read from the
model and written as comments: it is not a setting. What a model cannot say (mean/std
of a float input, colour order, resize, crop) is written as a value, each marked
``GUESS`` unless it came from the model's metadata or an ``-o`` override. A detector
(see modelport.convert.inspect for the layouts) also gets ``[model] task = "detect"`` and a
``[detect]`` section: its decoder, strides or priors, thresholds and letterbox, guessed from
the output layout. Nothing is written when the model, the labels or an override is refused.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from modelport.common.artifacts import write_atomic
from modelport.common.calibration import size_warning
from modelport.common.config import Config, load_config
from modelport.common.context import StepContext
from modelport.common.contract import Contract
from modelport.common.errors import InputError
from modelport.common.images import resolve_images
from modelport.common.labels import Labels
from modelport.common.log import console, warn

from .inspect import boxes_decoded, inspect

# Strides of the common YOLOX/YOLO heads, tried in order for one that gives the model's number of rows.
YOLO_STRIDES = ([8, 16, 32], [8, 16, 32, 64], [16, 32, 64])
# The Ultra-Light face detector's priors: the SSD guess when they give the model's number of rows.
SSD_STRIDES = [8, 16, 32, 64]
SSD_MIN_SIZES: list[list[float]] = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]


def _toml(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _path(p: Path, out_dir: Path) -> str:
    """Relative to the config (how load_config reads it) when that stays near, else absolute."""
    rel = os.path.relpath(Path(p).resolve(), out_dir.resolve())
    return rel if not rel.startswith(os.path.join("..", "..")) else str(Path(p).resolve())


def _line(key: str, value: object, note: str) -> str:
    return f"{f'{key} = {_toml(value)}':<34} # {note}"


def detect_guesses(contract: Contract, model: Path) -> tuple[list[tuple[str, object]], dict[str, str]]:
    """A detector's settings guessed from its output layout (as overrides) and why each was guessed."""
    from modelport.common.config import DetectConfig
    from modelport.tasks.detect import expected_rows

    rows = contract.outputs[0].shape[1]
    size = contract.size
    sets: list[tuple[str, object]] = [("model.task", "detect")]
    why: dict[str, str] = {}
    if len(contract.outputs) == 1:
        fits = [s for s in YOLO_STRIDES if size and expected_rows(DetectConfig(strides=s), size) == rows]
        strides = fits[0] if fits else YOLO_STRIDES[0]
        why["strides"] = (
            f"GUESS: their grids give the model's {rows} rows" if fits else f"GUESS, WRONG: the model has {rows} rows, set them"
        )
        why["decoder"] = "GUESS: one [1, N, 5 + C] output is a YOLOX-style raw head (sigmoids applied)"
        why["color"] = why["mean"] = why["std"] = "GUESS: YOLOX takes BGR 0..255 (mean 0, std 1)"
        sets += [("detect.decoder", "yolox"), ("detect.strides", strides), ("detect.fit", "letterbox")]
        sets += [("input.color", "BGR"), ("input.mean", [0.0, 0.0, 0.0]), ("input.std", [1.0, 1.0, 1.0])]
        return sets, why
    boxes = next(o for o in contract.outputs if o.shape[2] == 4)
    scores = next(o for o in contract.outputs if o.shape[2] != 4)
    decoded = boxes_decoded(model, boxes.name)
    decoder = "boxes_scores" if decoded else "ssd"
    why["decoder"] = (
        "GUESS: an Exp feeds the boxes, so the model decodes them itself"
        if decoded
        else "GUESS: nothing decodes the boxes in the model: raw SSD regressions, decoded with priors"
    )
    why["boxes_output"] = why["scores_output"] = "from the output shapes ([1, N, 4] are the boxes)"
    why["background"] = "GUESS: score column 0 is the background (an SSD softmax)"
    why["color"] = why["mean"] = why["std"] = "GUESS: RGB, (x - 127) / 128 (Ultra-Light face detector style)"
    sets += [("detect.boxes_output", boxes.name), ("detect.scores_output", scores.name)]
    sets += [("detect.background", True), ("detect.fit", "stretch")]
    sets += [("input.color", "RGB"), ("input.mean", [127.0, 127.0, 127.0]), ("input.std", [128.0, 128.0, 128.0])]
    if decoder == "ssd":
        ssd = DetectConfig(decoder="ssd", strides=SSD_STRIDES, min_sizes=SSD_MIN_SIZES)
        numbered = size is not None and expected_rows(ssd, size) == rows
        why["strides"] = why["min_sizes"] = (
            f"GUESS: these priors number the model's {rows} rows"
            if numbered
            else f"GUESS, WRONG: these priors do not number the model's {rows} rows, set them"
        )
        sets += [("detect.strides", SSD_STRIDES), ("detect.min_sizes", SSD_MIN_SIZES)]
    # Each override is validated as it is applied: the decoder after the priors it needs.
    sets.append(("detect.decoder", decoder))
    return sets, why


_DETECT_NOTES = {
    "variances": "GUESS: SSD centre, size variances",
    "box_format": "GUESS: corner form x1, y1, x2, y2",
    "normalized": "GUESS: boxes in 0..1 of the input",
    "score_threshold": "GUESS: boxes kept (low for COCO mAP)",
    "nms_iou": "GUESS: NMS IoU",
    "max_boxes": "GUESS: boxes kept per photo",
    "class_agnostic": "GUESS: NMS per class",
    "agreement_score": "boxes above it are compared with the source's",
    "match_iou": "a box matches the source's of its class at this IoU",
    "fit": "GUESS: letterbox keeps the aspect ratio; stretch resizes",
    "pad_value": "GUESS: letterbox padding",
    "align": "GUESS: where the photo sits in the letterbox",
}


def _detect_section(cfg: Config, contract: Contract, given: set[str], why: dict[str, str]) -> list[str]:
    det = cfg.detect
    keys = ["decoder"]
    if len(contract.outputs) == 2:
        keys += ["boxes_output", "scores_output", "background"]
    if det.decoder in ("yolox", "ssd"):
        keys += ["strides"]
    if det.decoder == "ssd":
        keys += ["min_sizes", "variances"]
    if det.decoder == "boxes_scores":
        keys += ["box_format", "normalized"]
    keys += ["score_threshold", "nms_iou", "max_boxes", "class_agnostic", "agreement_score", "match_iou", "fit"]
    if det.fit == "letterbox":
        keys += ["pad_value", "align"]
    lines = ["", "[detect]"]
    for key in keys:
        note = "given (-o)" if f"detect.{key}" in given else why.get(key) or _DETECT_NOTES.get(key, "GUESS")
        lines.append(_line(key, getattr(det, key), note))
    return lines


def calibration_count(cfg: Config) -> tuple[int, int] | None:
    """(used, found): the images an INT8 step would calibrate on, of those there (None: nothing there)."""
    try:
        found = len(resolve_images(cfg.images.calibration))
    except InputError:
        return None
    return min(found, cfg.images.calibration_limit), found


def _calibration_note(cfg: Config) -> str:
    counted = calibration_count(cfg)
    if counted is None:
        return "INT8 calibration images: none found there yet"
    used, found = counted
    of = f" of {found} ([images] calibration_limit)" if found > used else ""
    low = " (below [images] calibration_min)" if size_warning(used, cfg.images.calibration_min) else ""
    return f"INT8 calibration images: {used} used{of}{low}"


def render(
    contract: Contract,
    model: Path,
    labels: Labels | None,
    cfg: Config,
    given: set[str],
    out: Path,
    why: dict[str, str] | None = None,
) -> str:
    """The config text. ``cfg`` is the resolved config; ``given`` the [input] keys set by -o; ``why`` the
    reasons of a detector's guesses."""
    why = why or {}
    spec, d = cfg.input, out.parent
    shape = "x".join(map(str, contract.input_shape))
    quant = f", scale {contract.scale:g}, zero point {contract.zero_point}" if contract.quantized else ""
    lines = [
        f"# modelport config for {model.name}, written by `modelport init` ({datetime.now(UTC):%Y-%m-%d}).",
        "# Relative paths are relative to this file. Run it: MODELPORT_CONFIG=<this file> nox -s convert bench rknn",
        "#",
        "# Read from the model (not settings: a different [input] value is refused, naming both):",
        f"#   source: {contract.name} ({contract.kind}); input {contract.input_name!r} {contract.layout} {shape} "
        f"{contract.dtype}{quant}",
        (
            "#   outputs "
            + ", ".join(f"{o.name!r} {o.shape}" for o in contract.outputs)
            + f": a detector, {contract.classes} score columns"
            if contract.task == "detect"
            else f"#   output {contract.output_name!r}: [batch, {contract.classes}]"
            + (f" {contract.output_dtype} (dequantized for comparison)" if contract.output_dtype != "float32" else "")
        ),
        "# GUESS marks a value the model does not say: check it against how the model was trained.",
        "",
        "[model]",
        _line("name", cfg.model.name if "model.name" in given else model.stem, "shown in the report"),
        _line("path", _path(model, d), "the source model"),
    ]
    if contract.task == "detect":
        lines.append(_line("task", "detect", "read from the outputs' layout"))
    if labels is not None and labels.path is not None:
        lines.append(_line("labels", _path(labels.path, d), f"{len(labels.names)} names, {labels.convention}"))
    else:
        lines.append('# labels = "labels.txt"             # none given: classes are named by their index')
    lines += ["", "[input]"]

    def note(key: str, guess: str, known: str | None = None) -> str:
        return "given (-o)" if key in given else known or f"GUESS: {guess}"

    if contract.size is None:
        lines.append(_line("size", list(spec.size), "given (-o): the model's height/width are dynamic"))
    else:
        lines.append(f"# size = {_toml(list(contract.size))} is read from the model (height, width)")
    lines.append(_line("resize", spec.resize, note("resize", "how the training pipeline resized")))
    if spec.crop is None:
        lines.append(f"# crop = 0.875                     # {note('crop', 'none: the whole image is resized')}")
    else:
        lines.append(_line("crop", spec.crop, note("crop", "central crop fraction")))
    lines.append(_line("color", spec.color, note("color", "channel order the model was trained on", why.get("color"))))
    if contract.quantized:
        lines += [
            f"# mean = {_toml(list(spec.mean))}, std = {_toml(list(spec.std))}: derived from the "
            f"{contract.dtype} input's quantization",
            "# (real = (q - zero_point) * scale), what every float and self-normalising backend is given.",
        ]
    else:
        from_meta = "from the model's metadata" if contract.mean is not None else None
        guess = "pixel range [-1, 1] (MobileNet/Inception style); ImageNet torchvision models use mean 123.675, 116.28, 103.53 and std 58.395, 57.12, 57.375"
        lines.append(_line("mean", list(spec.mean), note("mean", guess, from_meta or why.get("mean"))))
        lines.append(_line("std", list(spec.std), note("std", "see mean", from_meta or why.get("std"))))
    lines.append(_line("layout", spec.layout, "of the exported ONNX (RKNN and TensorRT need NCHW)"))
    lines += [
        "",
        "[images]",
        _line("eval", _path(cfg.images.eval, d), "eval photos (agreement is measured on these)"),
        _line("calibration", _path(cfg.images.calibration, d), _calibration_note(cfg)),
        _line("headline", cfg.images.headline, "the image whose top-1 the report shows"),
    ]
    if contract.task == "detect":
        lines += _detect_section(cfg, contract, given, why)
    return "\n".join([*lines, ""])


@click.command("init")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Labels file: one per output, or one more with 'background' first or last (optional).",
)
@click.option(
    "-o",
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="A value the model cannot say, e.g. -o input.color=BGR -o 'input.mean=[123.675,116.28,103.53]'.",
)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Config file to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.pass_obj
def init(ctx: StepContext, model: Path, labels_path: Path | None, sets: tuple[str, ...], out: Path, force: bool) -> None:
    """Inspect MODEL (.tflite or .onnx) and write a commented config for it to --out."""
    if not model.is_file():
        raise InputError("no such model file", model)
    if out.exists() and not force:
        raise InputError("already exists (pass --force to overwrite)", out)
    overrides = [*ctx.overrides, *sets]
    keys = {(o.split("=", 1)[0] if isinstance(o, str) else o[0]).strip() for o in overrides}
    given = keys | {k.split(".", 1)[1] for k in keys if k.startswith("input.")}
    contract = inspect(model)
    guessed, why = detect_guesses(contract, model) if contract.task == "detect" else ([], {})
    # Built-in defaults, never ./modelport.toml: its [input] describes the shipped model, not this one.
    # The layout's guesses come first: an -o wins over them.
    cfg = load_config(overrides=[*guessed, *overrides], defaults=True)
    resolved = cfg.with_contract(contract, model)
    labels = Labels.load(labels_path, num_classes=contract.classes) if labels_path else None
    text = render(contract, model, labels, resolved, given, out, why)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    counted = calibration_count(resolved)
    if counted is None:
        warn(f"no calibration images at {resolved.images.calibration}: set [images] calibration before any INT8 step")
    elif too_few := size_warning(counted[0], resolved.images.calibration_min):
        warn(too_few)
    guesses = sum("GUESS" in line for line in text.splitlines() if not line.startswith("# GUESS marks"))
    what = (
        f"a detector ({resolved.detect.decoder}), {contract.classes} score columns"
        if contract.task == "detect"
        else f"{contract.classes} outputs"
    )
    console.print(
        f"wrote {out}: {contract.name}, {contract.layout} {contract.input_shape} {contract.dtype}, {what}; "
        f"{guesses} guessed values marked GUESS; "
        + ("no calibration images yet" if counted is None else f"{counted[0]} calibration images"),
        markup=False,
    )
