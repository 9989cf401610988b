"""`modelport fetch`: put the source model and labels into artifacts/source/.

Imports local files (``--from``, [model] path, MODELPORT_MODEL; the default config
points at the copies shipped in data/models/) or, with [model] download = true,
downloads the official archive and takes its one .tflite member out without
extracting anything to disk (so no archive path can escape). Every download is
checked against a pinned sha256 before anything reads it as a model. The model is
loaded by the TFLite runtime and checked against [input] before it is committed.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

import click
import numpy as np

from modelport.bench.runtimes.tflite import TfliteRuntime
from modelport.common.artifacts import sha256_file
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.labels import Labels
from modelport.common.log import step, warn

MODEL, LABELS = "source/model.tflite", "source/labels.txt"
TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_header(path: Path) -> None:
    head = path.read_bytes()[:8] if path.stat().st_size >= 8 else b""
    if head[4:8] != TFLITE_IDENTIFIER:
        raise InputError("not a TFLite flatbuffer (missing 'TFL3' identifier)", path)


OFFLINE_HINT = ("the shipped model needs no network: keep [model] download = false (modelport.toml's default) "
                "or import a local file with `modelport fetch --from FILE`")


def download(url: str, dest: Path, sha256: str | None, allow_unpinned: bool = False, verified_later: bool = False) -> Path:
    """Download to ``dest`` and verify it before anything reads it.

    Without a pinned sha256 the download is refused unless ``allow_unpinned``, or unless
    ``verified_later``: an archive whose member has a pinned hash is only listed by tarfile
    before that member's hash is checked. A file nobody checked is never fed to a toolchain.
    """
    if not sha256 and not allow_unpinned and not verified_later:
        raise InputError("no sha256 pinned for this download: set [model] member_sha256 / labels_sha256 (or --sha256) "
                         "to the published value, or pass --allow-unpinned to accept and record what arrives", url)
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
            m = members.get(member.removeprefix("./"))
            if m is None or not m.isfile():
                tflites = [n for n, x in members.items() if n.endswith(".tflite") and x.isfile()]
                if len(tflites) != 1:
                    raise InputError(f"archive has no single regular .tflite member (looked for {member!r})", archive)
                m = members[tflites[0]]
            with tar.extractfile(m) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except tarfile.TarError as e:
        raise InputError(f"not a readable tar archive: {e}", archive) from None


def _local_source(path: Path) -> tuple[Path, Path | None]:
    """A .tflite file, or a folder with one .tflite (and maybe labels.txt)."""
    if path.is_dir():
        tflites = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".tflite")
        if len(tflites) != 1:
            raise InputError(f"folder must hold exactly one .tflite, found {len(tflites)}", path)
        labels = path / "labels.txt"
        return tflites[0], labels if labels.is_file() else None
    if not path.is_file():
        raise InputError("no such model file", path)
    return path, None


@click.command()
@click.option("--from", "from_path", type=click.Path(path_type=Path), help="Local .tflite, folder or .tgz to import instead of downloading.")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path, dir_okay=False), help="Local labels file (1001 with background first, or 1000).")
@click.option("--download", "force_download", is_flag=True, help="Download the official model ([model] url) instead of "
              "using [model] path, as [model] download = true does.")
@click.option("--sha256", "sha256", help="Expected sha256 of the model archive download (overrides [model] sha256).")
@click.option("--allow-unpinned", is_flag=True, envvar="MODELPORT_ALLOW_UNPINNED",
              help="Accept a download with no pinned sha256 (its hash is printed and recorded). Env: MODELPORT_ALLOW_UNPINNED=1.")
@click.option("--force", is_flag=True, help="Re-import even when source/ is up to date.")
@click.pass_obj
def fetch(ctx: StepContext, from_path: Path | None, labels_path: Path | None, force_download: bool,
          sha256: str | None, allow_unpinned: bool, force: bool):
    """Import the source TFLite model and labels into artifacts/source/ (or download the official ones).

    Model: --from, else [model] path / MODELPORT_MODEL (modelport.toml: the model
    shipped in data/models/), else with --download or [model] download = true the
    official archive from [model] url, checked against [model] member_sha256.
    Labels: --labels, [model] labels / MODELPORT_LABELS, a labels.txt beside the
    model; a download takes [model] labels_url (checked against labels_sha256).
    """
    cfg, store = ctx.config, ctx.store
    downloads = store.path(".downloads")
    downloading = from_path is None and (force_download or cfg.model.download)
    src = from_path or (None if downloading else cfg.model.path)
    labels_src = labels_path or (None if downloading else cfg.model.labels)
    if src is None and not downloading:
        raise InputError("no source model: set [model] path (or MODELPORT_MODEL, or `fetch --from FILE`), "
                         "or [model] download = true for the official one", cfg.source or "config")
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
        archive = download(cfg.model.url, downloads / Path(cfg.model.url).name, sha256 or cfg.model.sha256,
                           allow_unpinned, verified_later=bool(cfg.model.member_sha256))
    if labels_src is None:
        labels_src = download(cfg.model.labels_url, downloads / "labels.txt", cfg.model.labels_sha256, allow_unpinned)
    model_input = src or archive
    with ctx.store.lock(), store.produce(
        [MODEL, LABELS], inputs={"model": model_input, "labels": Path(labels_src)},
        tool="modelport-fetch", tool_version="1", options={"member": cfg.model.member if archive else None,
                 "member_sha256": cfg.model.member_sha256 if downloading else None},
        force=force or ctx.force,
    ) as job:
        if job.cached:
            return
        step(f"import {model_input} + {labels_src}")
        if archive:
            extract_member(archive, cfg.model.member, job.tmp(MODEL))
            if downloading and cfg.model.member_sha256:
                got = sha256_file(job.tmp(MODEL))
                if got != cfg.model.member_sha256:
                    archive.unlink(missing_ok=True)  # never reused: the next fetch downloads again
                    raise InputError(f"member {cfg.model.member!r} has sha256 {got}, not the pinned "
                                     f"[model] member_sha256 {cfg.model.member_sha256}", cfg.model.url)
        else:
            shutil.copyfile(src, job.tmp(MODEL))
        shutil.copyfile(labels_src, job.tmp(LABELS))
        _validate(ctx, job.tmp(MODEL), job.tmp(LABELS), shown=model_input, labels_shown=Path(labels_src))


def _validate(ctx: StepContext, model: Path, labels: Path, shown: Path, labels_shown: Path) -> None:
    try:
        check_tflite_header(model)
        runtime = TfliteRuntime(ctx.config, {"model": model})
        with runtime:
            out = runtime.infer(np.zeros(ctx.config.input.shape("NHWC"), "float32"))
    except InputError as e:
        raise InputError(e.message, shown) from None  # name the user's file, not our temp copy
    try:
        Labels.load(labels, num_classes=out.shape[-1])
    except InputError as e:
        raise InputError(e.message, labels_shown) from None
