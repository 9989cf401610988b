"""`convert openvino-fp32` / `openvino-int8`: the pipeline's ONNX model as OpenVINO IR.

FP32: ``ov.convert_model`` of onnx/model.onnx, saved with ``compress_to_fp16=False`` (fp32 weights).
INT8: NNCF post-training quantization of that model over the common calibration set.
Each is verified against the reference through the runtime that benches it.
"""

from __future__ import annotations

import importlib.util
import shutil
from importlib.metadata import version

from modelport.common.context import StepContext
from modelport.common.errors import ToolchainMissing
from modelport.common.log import activity, step
from modelport.common.onnx_safety import check_onnx
from modelport.common.reference import REFERENCE
from modelport.convert.verify import verify
from modelport.runtime.onnxruntime import ONNX_MODEL

from .runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime

SOURCE = ONNX_MODEL


def unavailable_reason(need_nncf: bool = False) -> str | None:
    missing = [m for m in ("openvino",) + (("nncf",) if need_nncf else ()) if importlib.util.find_spec(m) is None]
    return f"python module {', '.join(missing)} not installed in this env" if missing else None


def tool_version(need_nncf: bool = False) -> str:
    return f"openvino {version('openvino')}" + (f", nncf {version('nncf')}" if need_nncf else "")


def read_onnx(path):
    import openvino as ov

    return ov.convert_model(str(path))


def save(model, job, xml: str, bin_: str) -> None:
    """Save the IR in the job's workdir, then move both files onto the job's temp outputs."""
    import openvino as ov

    out = job.workdir / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    shutil.move(out, job.tmp(xml))
    shutil.move(out.with_suffix(".bin"), job.tmp(bin_))


def nncf_quantize(model, calibration):
    """NNCF post-training INT8 over the calibration tensors (NCHW float32, batch 1)."""
    import nncf

    tensors = list(calibration.tensors("NCHW", "float32"))
    return nncf.quantize(model, nncf.Dataset(tensors), preset=nncf.QuantizationPreset.PERFORMANCE,
                         subset_size=len(tensors))


class Target:
    """One OpenVINO IR precision as a conversion target."""

    def __init__(self, runtime, kind: str):
        self.runtime, self.kind = runtime, kind
        self.xml, self.bin = runtime.artifacts["model"], runtime.artifacts["weights"]

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.kind == "int8")

    def tool_version(self) -> str:
        return tool_version(self.kind == "int8")

    def run(self, ctx: StepContext, force: bool):
        reason = self.unavailable_reason()
        if reason:
            raise ToolchainMissing(reason)
        cfg, store = ctx.config, ctx.store
        source = store.path(SOURCE)
        check_onnx(source)
        inputs = {"onnx": source, "reference": store.path(REFERENCE)}
        options = {"compress_to_fp16": False, "device": "CPU", "inference_precision": "f32"}
        calib = None
        if self.kind == "int8":
            calib = ctx.calibration
            calib.validate()  # every calibration image decodes before anything is written
            inputs |= {f"calibration:{p.name}": p for p in calib.paths}
            options |= {"preset": "performance", "subset_size": len(calib), "calibration_images": len(calib)}
        outputs = [store.path(self.xml), store.path(self.bin)]
        with store.produce([self.xml, self.bin], inputs=inputs, tool="nncf" if calib else "openvino",
                           tool_version=self.tool_version(), options=options, force=force) as job:
            if job.cached:
                return outputs
            model = read_onnx(source)
            if calib is not None:
                step(f"nncf.quantize {SOURCE} -> {self.xml}: INT8, performance preset, {len(calib)} calibration images")
                with activity(f"NNCF calibration + quantization on {len(calib)} images"):
                    model = nncf_quantize(model, calib)
            else:
                step(f"ov.convert_model {SOURCE} -> {self.xml} (fp32 weights)")
            save(model, job, self.xml, self.bin)
            runtime = self.runtime(cfg, {"model": job.tmp(self.xml), "weights": job.tmp(self.bin)})
            agreement = verify(ctx, runtime, self.kind, store.path(self.xml))
            job.record(agreement=agreement.model_dump(exclude={"per_image"}) if agreement else None,
                       **({"calibration": calib.signature()} if calib is not None else {}))
        return outputs


FP32 = Target(OpenvinoFp32Runtime, "float")
INT8 = Target(OpenvinoInt8Runtime, "int8")
