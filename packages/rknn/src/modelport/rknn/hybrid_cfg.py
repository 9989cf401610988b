"""rknn-toolkit2's hybrid quantization cfg: reading and patching ``custom_quantize_layers``, and step 1 that
writes it (what `rknn hybrid` and the INT8 search's float16 variants share)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError

from . import convert, toolkit
from .dataset import write_dataset

_BLOCK = re.compile(r"^custom_quantize_layers:.*?(?=^\S)", re.MULTILINE | re.DOTALL)

_KEY = re.compile(r"^    (?:\? (\S.*?)|([^\s:].*?):)\s*$")  # a tensor of quantize_parameters, plain or `? name`
_DTYPE = re.compile(r"^\s+(?::\s+)?dtype:\s*(\S+)")
INTEGER_DTYPES = ("int4", "int8", "uint8", "int16")  # what step 1 quantizes; float16/float32 entries it keeps in float


def cfg_dtypes(text: str) -> dict[str, str]:
    """Every tensor of a step-1 cfg's ``quantize_parameters`` -> its dtype ("" when the entry names none).

    The toolkit writes a key longer than 128 characters (tflite2onnx's tensor names) in YAML's
    explicit form, ``? name`` with the value on the next line (``:   qtype: ...``)."""
    params = text.split("quantize_parameters:", 1)[1] if "quantize_parameters:" in text else ""
    out: dict[str, str] = {}
    current = None
    for line in params.splitlines():
        if key := _KEY.match(line):
            current = (key.group(1) or key.group(2)).strip("'\"")
            out[current] = ""
        elif current is not None and (dtype := _DTYPE.match(line)):
            out[current] = dtype.group(1).strip("'\"")
    return out


def cfg_layers(text: str) -> tuple[list[str], list[str]]:
    """(layers already in custom_quantize_layers, every tensor name in quantize_parameters).

    A key past the line width (YOLOX's ``.../m.0/conv2/dconv/conv/Conv_output_0``) has its value alone on the
    next line (``float16``), as a ``? name`` has it after ``:``: neither is a layer."""
    m = _BLOCK.search(text)
    custom = []
    for line in m.group(0).splitlines()[1:] if m else []:
        entry = line.split("#", 1)[0].strip()
        if not entry or entry.startswith(":") or (":" not in entry and not entry.startswith("? ")):
            continue
        name = entry[2:] if entry.startswith("? ") else entry.rsplit(":", 1)[0]
        custom.append(name.strip().strip("'\""))
    return custom, list(cfg_dtypes(text))


def quantized_tensors(text: str) -> list[str]:
    """The tensors step 1 quantizes: the only names step 2 can move to float16."""
    return [t for t, dtype in cfg_dtypes(text).items() if dtype in INTEGER_DTYPES]


def floated(built: str, plain: str) -> list[str]:
    """The tensors a build keeps in float16 (``built``: its cfg, ``built_cfg``) that the plain quantization of the
    same algorithm (``plain``: step 1's cfg) quantizes: what the toolkit's auto_hybrid chose to float."""
    quantized = set(quantized_tensors(plain))
    return [t for t, dtype in cfg_dtypes(built).items() if dtype == "float16" and t in quantized]


def built_cfg(rk: Any, path: Path) -> str:
    """The quantization cfg of the model built in ``rk``'s session, written by the toolkit's own quantizer (the
    writer step 1 uses): the public API says nothing of which tensors a build(auto_hybrid=True) kept in float."""
    rk.rknn_base.quantizer.save_hybrid_cfg(str(path))
    return path.read_text()


def check_float16(
    names: list[str],
    text: str,
    origin: str,
    what: Path | str,
    error: type[ModelportError] = InputError,
    proposed: Collection[str] = (),
) -> None:
    """Raise ``error`` (one line, naming each) unless every name is a tensor step 1's cfg quantizes: step 2
    refuses any other name ("Invalid operands name"), or it would change nothing (already float).

    A layer of the toolkit's own proposal (``proposed``) is in the cfg as float16 already: step 1 wrote it so."""
    dtypes = cfg_dtypes(text)
    bad = [n for n in names if dtypes.get(n) not in INTEGER_DTYPES and not (n in proposed and dtypes.get(n) == "float16")]
    if not bad:
        return
    tensors = [t for t, dtype in dtypes.items() if dtype in INTEGER_DTYPES]

    def why(u: str) -> str:
        if u in dtypes:
            return f"{u!r} (step 1 keeps it {dtypes[u] or 'unquantized'})"
        # fused names are long ("BiasAdd_50;Conv2D_33;BiasAdd_50/bias1"): a part of one is a good guess
        close = [t for t in tensors if u in t.split(";") or u in t][:3] or difflib.get_close_matches(u, tensors, 1)
        return f"{u!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else " (not in this graph)")

    raise error(
        f"{origin}: not a layer step 1 quantizes, so hybrid quantization cannot keep it in float16: "
        f"{', '.join(why(u) for u in bad)}; it quantizes {len(tensors)} (names in rknn/accuracy/analysis.json)",
        what,
    )


def patch_cfg(text: str, layers: list[str]) -> str:
    """Set custom_quantize_layers to ``layers`` (float16), editing the text only.

    Never a YAML load/dump: a round trip re-rounds the saved scales and step2 then refuses
    them as modified. Names are quoted: they contain ``;`` and ``/``.
    """
    block = "custom_quantize_layers:" + ("".join(f"\n    '{n}': float16" for n in layers) if layers else " {}") + "\n"
    if not _BLOCK.search(text):
        return block + text
    return _BLOCK.sub(lambda _: block, text, count=1)


def step1(
    ctx: StepContext,
    onnx_path: Path,
    workdir: Path,
    log: Path,
    verbose: bool,
    proposal: bool = False,
    proposal_images: int | None = None,
) -> Path:
    """The toolkit's hybrid step 1 in a session of its own (step 2 needs a new one): ``<stem>.model``, ``.data``
    and ``.quantization.cfg`` in ``workdir``; returns the cfg."""
    with toolkit.session(log, workdir, verbose) as rk:
        convert.load_and_config(rk, ctx, onnx_path, log)
        dataset = write_dataset(ctx.calibration, workdir / "calibration")
        toolkit.call(
            rk.hybrid_quantization_step1,
            dataset=str(dataset),
            proposal=proposal,
            **({"proposal_dataset_size": proposal_images} if proposal_images is not None else {}),
            what="hybrid_quantization_step1",
            log=log,
            path=onnx_path,
        )
    return workdir / f"{onnx_path.stem}.quantization.cfg"  # step1 names its files after the model


def step2(rk: Any, stem: str, log: Path, path: Path) -> None:
    """The toolkit's hybrid step 2 in ``rk``'s session: builds from step 1's ``<stem>.model`` / ``.data`` and the
    edited ``hybrid.quantization.cfg`` in the session's folder."""
    toolkit.call(
        rk.hybrid_quantization_step2,
        model_input=f"{stem}.model",
        data_input=f"{stem}.data",
        model_quantization_cfg="hybrid.quantization.cfg",
        what="hybrid_quantization_step2",
        log=log,
        path=path,
    )
