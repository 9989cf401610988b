"""A backend's INT8 search space, as the recovery search (``modelport.common.recovery``) runs it.

``Knobs`` owns what every backend's search space does alike: the variant ids and file names, reading
a built variant's manifest into a ``Variant``, the step's inputs (the model's sources, the reference,
the calibration and eval images), the interleaved timing of the variants with their FP32 twin, and
the produce/record step. A backend supplies only its methods and float layers (``space``), how to make
one variant with the accuracy gate off (``make``, through its own converter), its runtime pair, and,
when it can keep layers in float, how it ranks them (``worst_layers``, ``quantized_layers``).

It lives here, not in modelport.common, because it runs variants through ``Runtime`` classes, and
not in modelport.convert, because the rknn env installs no convert package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from modelport.common import onnx_layers, recovery
from modelport.common.artifacts import file_inputs
from modelport.common.context import StepContext
from modelport.common.log import warn
from modelport.common.preprocess import to_tensor
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import reference_file
from modelport.common.results import headline_index

from .base import ONNX_MODEL, Runtime
from .run import prepared_images


class Builder(Protocol):
    """What makes a backend's variants (its converter): the search's outputs are recorded under its version."""

    def tool_version(self) -> str: ...


def configured_first(configured: str, methods: tuple[str, ...] | list[str]) -> list[str]:
    """The toolchain's methods in its order, the configured one first (what the search tries first)."""
    return [configured, *(m for m in methods if m != configured)]


@contextlib.contextmanager
def runtime_timers(ctx: StepContext, runtimes: Mapping[str, Runtime]) -> Iterator[dict[str, Callable[[], object]]]:
    """One batch-1 inference on the headline image per runtime (each activated once), as bench times it."""
    i = headline_index(ctx)
    arr = prepared_images(ctx)[i]
    with contextlib.ExitStack() as stack:
        timers: dict[str, Callable[[], object]] = {}
        for key, rt in runtimes.items():
            stack.enter_context(rt)
            tensor = to_tensor(arr, ctx.config.input, rt.input_layout, rt.input_dtype)
            timers[key] = cast(Callable[[], object], lambda rt=rt, tensor=tensor: rt.infer(tensor))
        yield timers


class Knobs:
    """One backend's INT8 search space (``recovery.Knobs``): subclass, set the class attributes, write
    ``space``, ``make`` and ``options``."""

    key: str  # results key, e.g. "onnx-int8"
    display: str
    outputs: ClassVar[dict[str, str]]  # role -> the INT8 artifacts later steps read (the kept variant's files)
    files: ClassVar[dict[str, str]]  # role -> one variant's file, "{id}" standing for the variant id
    sized: ClassVar[tuple[str, ...] | None] = None  # the roles a variant's size counts; None: every file
    sources: ClassVar[dict[str, str]] = {}  # input name -> the store path of a model the variants are made from
    builder: ClassVar[Builder]  # the converter that makes each variant
    # The INT8 runtime over a variant's files and its FP32 twin, for the interleaved timing; None: no latency here.
    runtimes: ClassVar[tuple[type[Runtime], type[Runtime]] | None] = None
    # Why the toolchain keeps no layers in float (no worst_layers/quantized_layers): a failed search says it.
    float_unsupported: ClassVar[str | None] = None

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        self.methods, self.float_layers = self.space()
        wanted = ctx.config.quantization.recover_methods
        if wanted is not None:
            chosen = [m for m in self.methods[1:] if m in wanted]
            if wanted and not chosen:  # one list serves every backend of a run: a miss here is no error, but say it
                warn(
                    f"{self.display}: none of [quantization] recover_methods {wanted} is one of its methods "
                    f"({', '.join(self.methods[1:])}): the search tries only the configured {self.methods[0]}"
                )
            self.methods = [self.methods[0], *chosen]

    # -- what a backend supplies
    def space(self) -> tuple[list[str], list[str]]:
        """Calibration methods (the configured one first) and the layers the config already keeps in float."""
        raise NotImplementedError

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        """Build the variant into ``files`` (role -> store path), verified with the accuracy gate off, its
        manifest recording the agreement (on the first file)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The configuration the search's outputs depend on (the step's options)."""
        raise NotImplementedError

    def with_input(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` and what every calibrated model depends on: the input signature, the calibration set's size."""
        return options | {"input": self.ctx.config.input.signature, "calibration_images": len(self.ctx.calibration)}

    def worst_layers(self, variant: Variant) -> list[str]:
        return []  # no layer can be kept in float unless the backend says how it ranks them

    def quantized_layers(self, variant: Variant) -> set[str]:
        return set()

    def head_layers(self, variant: Variant) -> list[str]:
        """A detector's head (``onnx_layers.head`` of the FP32 ONNX model every backend names its layers by), the
        layers ``variant`` quantizes only: a backend that cannot keep layers in float quantizes none here."""
        if self.ctx.config.detector is None:
            return []
        quantized = self.quantized_layers(variant)
        if not quantized:
            return []
        return [la for la in onnx_layers.head(onnx_layers.load(self.ctx.store.path(ONNX_MODEL))) if la in quantized]

    def layer_graph(self) -> onnx_layers.OnnxGraph | None:
        """The FP32 ONNX model every backend names its layers by, with each layer's MACs: what the search
        counts float regions and the float share on. None without that model (nothing to count on)."""
        path = self.ctx.store.path(ONNX_MODEL)
        return onnx_layers.load(path, macs=True) if path.exists() else None

    def in_float(self, float_layers: list[str]) -> list[str]:
        return list(float_layers)  # a toolchain that keeps exactly the layers it is given in float

    # -- what the base does for every backend
    def variant_files(self, vid: str) -> dict[str, str]:
        return {role: rel.replace("{id}", vid) for role, rel in self.files.items()}

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        files = self.variant_files(vid)
        self.make(method, float_layers, files)
        store = self.ctx.store
        manifest = store.read_manifest(next(iter(files.values()))) or {}
        # Layers the toolchain chose itself to keep in float (RKNN's auto_hybrid and proposal, NNCF's accuracy control)
        # are float layers too: every view counts and costs them with the ones the search asked for.
        chosen = [la for la in manifest.get("extra", {}).get("toolchain_float_layers") or [] if la not in float_layers]
        return Variant(
            vid,
            method,
            [*float_layers, *chosen],
            files,
            recovery.brief(manifest.get("extra", {}).get("agreement")),
            size_bytes=sum(store.path(files[r]).stat().st_size for r in self.sized or files),
            build_seconds=manifest.get("seconds"),
        )

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        if self.runtimes is None:
            return contextlib.nullcontext(None)
        int8, fp32 = self.runtimes
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: int8(cfg, {r: store.path(v.files[r]) for r in int8.artifacts}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": fp32.from_store(store, cfg)})

    def inputs(self) -> dict[str, Path]:
        """The sources, the reference, each calibration and eval image; the calibration set is checked first."""
        store, calib = self.ctx.store, self.ctx.calibration
        calib.validate()
        return {
            **{name: store.path(rel) for name, rel in self.sources.items()},
            "reference": store.path(reference_file(self.ctx.config)),
            **file_inputs("calibration", calib.paths),
            **file_inputs("image", self.ctx.eval_images),
        }

    def produce(self, force: bool | None = None) -> dict[str, Any]:
        """``outputs`` = the configured variant, or the one the search keeps; returns the search's record.
        ``force`` (default: the variants') remakes the outputs even when their manifest matches."""
        return recovery.produce(
            self.ctx,
            self,
            self.outputs,
            inputs=self.inputs(),
            tool_version=self.builder.tool_version(),
            options=self.options(),
            force=self.force if force is None else force,
        )

    def run(self) -> list[Path]:
        self.produce()
        return [self.ctx.store.path(rel) for rel in self.outputs.values()]
