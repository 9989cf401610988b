"""`convert reference`: the source model's outputs on the eval images, in its own runtime.

A TFLite source runs in the TFLite interpreter (a full-integer one on its own integer
input, its output dequantized), an ONNX source in onnxruntime as it came, a Caffe source
in OpenCV's dnn module. Every
converter in every env verifies against this file, and the report compares every
backend with it. The manifest says whether the outputs are probabilities or logits.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from modelport.common.artifacts import COMPANIONS, Job, file_inputs
from modelport.common.context import StepContext
from modelport.common.log import console, warn
from modelport.common.reference import DETECT_REFERENCE, REFERENCE, image_ids
from modelport.runtime.base import Runtime
from modelport.runtime.registry import SOURCE_KEYS, runtime_class, source_runtime
from modelport.runtime.run import placements, prepared_images, run_all_outputs, run_outputs
from modelport.tasks.detect.judge import decode_all, reference_arrays

from .base import Converter


def output_kind(outputs: np.ndarray, step: float | None) -> str:
    """probabilities when every row lies in [0, 1] and sums to 1, to within what rounding each of a
    quantized output's values to its step (``step``) can add up to; else logits."""
    tol = 0.02 + (0.5 * step * outputs.shape[1] if step else 0.0)
    sums = outputs.sum(axis=1)
    in_range = outputs.min() >= 0 and outputs.max() <= 1 + (step or 0)
    return "probabilities" if in_range and np.allclose(sums, 1.0, atol=tol) else "logits"


class Reference(Converter):
    def unavailable_reason(self) -> str | None:
        """Either source kind may come: both source runtimes (the descriptors' ``source`` rows) are needed."""
        return next(filter(None, (runtime_class(k).unavailable_reason() for k in SOURCE_KEYS)), None)

    def tool_version(self) -> str:
        # TFLite's version names its distribution (ai-edge-litert or tensorflow); onnxruntime's is a bare number
        versions = ((runtime_class(k).backend, str(runtime_class(k).version())) for k in SOURCE_KEYS)
        return ", ".join(v if " " in v else f"{backend} {v}" for backend, v in versions)

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        cfg, contract = ctx.config, ctx.contract
        model = ctx.store.path(contract.file)
        runtime = source_runtime(cfg, model)

        if cfg.detector is not None:
            return self._detector(ctx, force, runtime, model)

        def make(job: Job) -> dict[str, object]:
            with runtime:
                outputs = run_outputs(runtime, prepared_images(ctx), cfg.input)
            buf = io.BytesIO()
            np.save(buf, outputs, allow_pickle=False)
            job.tmp().write_bytes(buf.getvalue())
            return {
                "images": image_ids(ctx.eval_images),
                "preprocessing": cfg.input.signature,
                "source": runtime.display,
                "outputs": output_kind(outputs, contract.output_scale),
            }

        return self.produce(
            ctx,
            force,
            {"reference": REFERENCE},
            make,
            inputs={"model": model}
            | {rel: ctx.store.path(rel) for rel in COMPANIONS.get(contract.kind, ())}
            | file_inputs("image", ctx.eval_images),
            options={"input": cfg.input.model_dump(mode="json"), "tflite": cfg.tflite.model_dump()},
            runtime=None,  # it is what the others are verified against
            tool=runtime.backend,
        )

    def _detector(self, ctx: StepContext, force: bool, runtime: Runtime, model: Path) -> list[Path]:
        """A detector's reference: every output by name and the source's decoded boxes (modelport.tasks.detect)."""
        cfg = ctx.config

        def make(job: Job) -> dict[str, object]:
            with runtime:
                outputs = run_all_outputs(runtime, prepared_images(ctx), cfg.input)
            found, _ = decode_all(outputs, cfg, placements(ctx))
            above = sum(len(d.above(cfg.detect.agreement_score)) for d in found)
            console.print(
                f"   {runtime.display} on {len(found)} photos: {sum(len(d) for d in found)} boxes, {above} of them "
                f"above the agreement score {cfg.detect.agreement_score} (what every row is compared on)",
                markup=False,
            )
            if not above:
                warn(
                    f"the source found no box above [detect] agreement_score {cfg.detect.agreement_score} on these photos: "
                    "every row agrees with it by F1 whatever it finds (lower agreement_score or use photos with objects)"
                )
            buf = io.BytesIO()
            np.savez(buf, allow_pickle=False, **reference_arrays(outputs, found))
            job.tmp().write_bytes(buf.getvalue())
            return {
                "images": image_ids(ctx.eval_images),
                "preprocessing": cfg.preprocessing,
                "source": runtime.display,
                "outputs": {name: list(np.shape(v)) for name, v in outputs[0].items()},
                "boxes": sum(len(d) for d in found),
            }

        return self.produce(
            ctx,
            force,
            {"reference": DETECT_REFERENCE},
            make,
            inputs={"model": model} | file_inputs("image", ctx.eval_images),
            # what judges the boxes (annotations, agreement thresholds) does not change the source's outputs
            options={
                "input": cfg.input.model_dump(mode="json"),
                "detect": cfg.detect.model_dump(mode="json", exclude={"annotations", "agreement_score", "match_iou"}),
            },
            runtime=None,  # it is what the others are verified against
            tool=runtime.backend,
        )


TARGET = Reference()
