"""`modelport fetch`: put the source model and labels into artifacts/source/.

Imports local files (``--from``, [model] path, MODELPORT_MODEL; the default config
points at the copies shipped in data/models/) or, with [model] download = true,
downloads the official archive and takes its one .tflite member out without
extracting anything to disk (so no archive path can escape). Every download is
checked against a pinned sha256 before anything reads it as a model.

The source is a TFLite model (float or full-integer), a float ONNX model, or a Caffe network
(.prototxt, with the .caffemodel of the same name beside it: both are imported). Its contract
(modelport.common.contract) is read from the model, checked against [input] and the
labels, and written beside it as source/contract.json; the model is run once in its
own runtime before anything is committed.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

import click
import numpy as np

from modelport.common.artifacts import COMPANIONS, sha256_file
from modelport.common.context import LABELS, StepContext
from modelport.common.contract import CONTRACT, SOURCES, Contract
from modelport.common.errors import InputError, ModelportError
from modelport.common.labels import Labels
from modelport.common.log import console, step, warn

from .inspect import inspect, source_kind

OFFLINE_HINT = (
    "the shipped model needs no network: keep [model] download = false (modelport.toml's default) "
    "or import a local file with `modelport fetch --from FILE`"
)


def download(url: str, dest: Path, sha256: str | None, allow_unpinned: bool = False, verified_later: bool = False) -> Path:
    """Download to ``dest`` and verify it before anything reads it.

    Without a pinned sha256 the download is refused unless ``allow_unpinned``, or unless
    ``verified_later``: an archive whose member has a pinned hash is only listed by tarfile
    before that member's hash is checked. A file nobody checked is never fed to a toolchain.
    """
    if not sha256 and not allow_unpinned and not verified_later:
        raise InputError(
            "no sha256 pinned for this download: set [model] member_sha256 / labels_sha256 (or --sha256) "
            "to the published value, or pass --allow-unpinned to accept and record what arrives",
            url,
        )
    if dest.is_file() and sha256 and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    step(f"download {url}")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelportError(f"download failed ({e}); {OFFLINE_HINT}", url) from None
    if sha256 and h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise InputError(f"sha256 {h.hexdigest()} does not match the pinned {sha256}", url)
    if not sha256 and not verified_later:
        warn(f"--allow-unpinned: {url} not verified; it has sha256 {h.hexdigest()} (pin that in modelport.toml)")
    tmp.replace(dest)
    return dest


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Copy one regular-file member's bytes out of a tar archive; nothing else touches the disk.

    An archive with a member that would escape it (absolute, ``..``) is refused outright,
    and links are never followed: only a regular file's bytes are read.
    """
    try:
        with tarfile.open(archive) as tar:
            members = {}
            for m in tar.getmembers():
                parts = PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise InputError(f"archive member {m.name!r} escapes the archive (refused)", archive)
                members[m.name.removeprefix("./")] = m
            found = members.get(member.removeprefix("./"))
            if found is None or not found.isfile():
                tflites = [n for n, x in members.items() if n.endswith(".tflite") and x.isfile()]
                if len(tflites) != 1:
                    raise InputError(f"archive has no single regular .tflite member (looked for {member!r})", archive)
                found = members[tflites[0]]
            contents = tar.extractfile(found)
            if contents is None:  # only regular files (isfile above) have contents
                raise InputError(f"archive member {found.name!r} is not a regular file", archive)
            with contents as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except tarfile.TarError as e:
        raise InputError(f"not a readable tar archive: {e}", archive) from None


MODEL_SUFFIXES = (".tflite", ".onnx", ".prototxt")


def _local_source(path: Path) -> tuple[Path, Path | None]:
    """A .tflite, .onnx or .prototxt file, or a folder with one of them (and maybe labels.txt)."""
    if path.is_dir():
        models = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
        if len(models) != 1:
            raise InputError(f"folder must hold exactly one .tflite, .onnx or .prototxt, found {len(models)}", path)
        labels = path / "labels.txt"
        return models[0], labels if labels.is_file() else None
    if not path.is_file():
        raise InputError("no such model file", path)
    return path, None


@click.command()
@click.option(
    "--from",
    "from_path",
    type=click.Path(path_type=Path),
    help="Local .tflite, .onnx, folder or .tgz to import instead of downloading.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Local labels file: one per output, or one more with 'background' first or last (optional: indices otherwise).",
)
@click.option(
    "--download",
    "force_download",
    is_flag=True,
    help="Download the official model ([model] url) instead of using [model] path, as [model] download = true does.",
)
@click.option("--sha256", "sha256", help="Expected sha256 of the model archive download (overrides [model] sha256).")
@click.option(
    "--allow-unpinned",
    is_flag=True,
    envvar="MODELPORT_ALLOW_UNPINNED",
    help="Accept a download with no pinned sha256 (its hash is printed and recorded). Env: MODELPORT_ALLOW_UNPINNED=1.",
)
@click.option("--force", is_flag=True, help="Re-import even when source/ is up to date.")
@click.pass_obj
def fetch(
    ctx: StepContext,
    from_path: Path | None,
    labels_path: Path | None,
    force_download: bool,
    sha256: str | None,
    allow_unpinned: bool,
    force: bool,
) -> None:
    """Import the source model (TFLite or ONNX) and labels into artifacts/source/ (or download the official ones).

    Model: --from, else [model] path / MODELPORT_MODEL (modelport.toml: the model
    shipped in data/models/), else with --download or [model] download = true the
    official archive from [model] url, checked against [model] member_sha256.
    Labels: --labels, [model] labels / MODELPORT_LABELS, a labels.txt beside the
    model; a download takes [model] labels_url (checked against labels_sha256).
    Without labels, classes are named by their index.
    """
    cfg, store = ctx.raw_config, ctx.store  # the contract in the store may be another model's
    downloads = store.path(".downloads")
    downloading = from_path is None and (force_download or cfg.model.download)
    src = from_path or (None if downloading else cfg.model.path)
    labels_src = labels_path or (None if downloading else cfg.model.labels)
    if src is None and not downloading:
        raise InputError(
            "no source model: set [model] path (or MODELPORT_MODEL, or `fetch --from FILE`), "
            "or [model] download = true for the official one",
            cfg.source or "config",
        )
    if src is not None:
        src = Path(src)
        if src.suffix in (".tgz", ".gz", ".tar"):
            archive = src
            src = None
        else:
            src, beside = _local_source(src)
            labels_src = labels_src or beside
            archive = None
    else:
        archive = download(
            cfg.model.url,
            downloads / Path(cfg.model.url).name,
            sha256 or cfg.model.sha256,
            allow_unpinned,
            verified_later=bool(cfg.model.member_sha256),
        )
    if labels_src is None and downloading:
        labels_src = download(cfg.model.labels_url, downloads / "labels.txt", cfg.model.labels_sha256, allow_unpinned)
    model_input = src or archive
    assert model_input is not None  # no local model means a download, which set archive
    kind = source_kind(src) if src else "tflite"
    model_rel = SOURCES[kind]
    companions = {rel: _companion(model_input, rel) for rel in COMPANIONS.get(kind, ())}
    outputs = [model_rel, *companions, CONTRACT] + ([LABELS] if labels_src else [])
    inputs = {"model": model_input} | companions | ({"labels": Path(labels_src)} if labels_src else {})
    with (
        ctx.store.lock(),
        store.produce(
            outputs,
            inputs=inputs,
            tool="modelport-fetch",
            tool_version="2",
            options={
                "member": cfg.model.member if archive else None,
                "member_sha256": cfg.model.member_sha256 if downloading else None,
                "input": cfg.input.model_dump(mode="json", exclude_unset=True),
            },
            force=force or ctx.force,
        ) as job,
    ):
        if job.cached:
            return
        step(f"import {model_input}" + (f" + {labels_src}" if labels_src else " (no labels: classes named by index)"))
        if archive:
            extract_member(archive, cfg.model.member, job.tmp(model_rel))
            if downloading and cfg.model.member_sha256:
                got = sha256_file(job.tmp(model_rel))
                if got != cfg.model.member_sha256:
                    archive.unlink(missing_ok=True)  # never reused: the next fetch downloads again
                    raise InputError(
                        f"member {cfg.model.member!r} has sha256 {got}, not the pinned "
                        f"[model] member_sha256 {cfg.model.member_sha256}",
                        cfg.model.url,
                    )
        else:
            shutil.copyfile(model_input, job.tmp(model_rel))
            for rel, companion in companions.items():
                shutil.copyfile(companion, job.tmp(rel))
        if labels_src:
            shutil.copyfile(labels_src, job.tmp(LABELS))
        checked = job.tmp(model_rel)
        if companions:  # checked side by side, named as in the store (the outputs' temp names differ)
            checked = job.workdir / PurePosixPath(model_rel).name
            for rel in [model_rel, *companions]:
                shutil.copyfile(job.tmp(rel), job.workdir / PurePosixPath(rel).name)
        contract = _validate(ctx, checked, Path(labels_src) if labels_src else None, shown=model_input)
        job.tmp(CONTRACT).write_text(contract.dump(), encoding="utf-8")
        job.record(contract=contract.model_dump(mode="json"))
    forget_other_sources(ctx, contract, labels_src is not None)


def _companion(model: Path, rel: str) -> Path:
    """The file a source keeps beside its model (a Caffe network's .caffemodel): same name, its suffix."""
    path = model.with_suffix(PurePosixPath(rel).suffix)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"this model needs {path.name} beside it (missing or empty)", model)
    return path


def _validate(ctx: StepContext, model: Path, labels: Path | None, shown: Path) -> Contract:
    """The model's contract, checked against [input] and the labels, after one run in its own runtime."""
    from modelport.runtime.registry import source_runtime

    try:
        contract = inspect(model, shown)
        cfg = ctx.raw_config.with_contract(contract, shown)
        runtime = source_runtime(cfg, model)
        with runtime:
            zero = np.zeros(runtime.input_shape(), runtime.input_dtype)
            outs = runtime.infer_all(zero) if contract.task == "detect" else {contract.output_name: runtime.infer(zero)}
    except InputError as e:
        raise InputError(e.message, shown if e.path == model else e.path) from None  # the user's file, not our copy
    out = outs[contract.output_name] if contract.output_name in outs else next(iter(outs.values()))
    if contract.task == "detect":
        # a detector's outputs are what the model declares (the decoder checks their layout)
        got = {k: list(np.shape(v)) for k, v in outs.items()}
        static = {o.name: list(o.shape) for o in contract.outputs if all(isinstance(d, int) and d >= 0 for d in o.shape)}
        if any(got.get(name) != shape for name, shape in static.items()):
            raise InputError(f"model outputs {got} on a zero image, not {static}", shown)
    elif out.reshape(out.shape[0], -1).shape[-1] != contract.classes:
        raise InputError(f"model outputs {out.shape} on a zero image, not [1, {contract.classes}]", shown)
    if labels is not None:
        Labels.load(labels, num_classes=contract.classes)
    console.print(
        f"   source: {contract.name} ({contract.kind}, {contract.layout} {list(contract.input_shape)} "
        f"{contract.dtype}, {contract.classes} outputs)",
        markup=False,
    )
    return contract


def forget_other_sources(ctx: StepContext, contract: Contract, has_labels: bool) -> None:
    """A new source makes the other kind's model copy, and labels it was not given, stale: they go. Results
    measured on another model stay (the report shows them as rows of another source model)."""
    store = ctx.store
    others = [kind for kind in SOURCES if kind != contract.kind]
    stale = [SOURCES[k] for k in others] + [rel for k in others for rel in COMPANIONS.get(k, ())]
    stale += [] if has_labels else [LABELS]
    for rel in stale:
        store.path(rel).unlink(missing_ok=True)
        store.manifest_path(store.path(rel)).unlink(missing_ok=True)
