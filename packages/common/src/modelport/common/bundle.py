"""`modelport bundle export`: one machine's results as one sha-checked file; reading it (or a folder) back for a merge.

A bundle is a ``.tar.gz`` with ``bundle.json`` first (schema, device key, machine, every
file's sha256 and size) and the files under ``artifacts/``: results (JSON + raw outputs),
the manifests of every artifact, the report sections and depth measurements; the models
themselves only when asked. Reading one checks every member against that index, refuses
anything not listed, and never extracts a path that would leave its folder: every name passes
safe_names, every member is hashed before it lands, and member count and sizes are bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from .artifacts import ArtifactStore, sha256_file
from .context import StepContext
from .errors import InputError
from .log import console
from .machine import device_key, machine_info
from .results import read_result
from .safe_names import inside, safe_relpath
from .schema import BackendResult

BUNDLE_VERSION = 1
BUNDLE_SCHEMA = f"modelport.bundle/{BUNDLE_VERSION}"
_SMALL = ("results/*.json", "results/*.npy", "**/*.manifest.json", "report/sections/*", "depth/*.json", "analysis/*.json")


def _contents(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> IO[bytes]:
    contents = tar.extractfile(member)
    if contents is None:  # links and folders have none; callers let only plain files through
        raise InputError(f"bundle member {member.name!r} is not a plain file (refused)", path)
    return contents


def _version(schema: str, family: str) -> int | None:
    name, _, version = str(schema).partition("/")
    return int(version) if name == family and version.isdigit() else None


def bundle_files(store: ArtifactStore, with_models: bool) -> list[Path]:
    files = {p for pattern in _SMALL for p in store.root.glob(pattern) if p.is_file()}
    if with_models:  # every artifact that has a manifest, i.e. was made and checked by a step
        files |= {m.with_name(m.name.removesuffix(".manifest.json")) for m in store.root.glob("**/*.manifest.json")}
    files = {p for p in files if p.is_file() and not p.name.startswith(".") and ".tmp" not in p.parts}
    return sorted(files)


def export(store: ArtifactStore, out: Path, with_models: bool = False) -> dict[str, Any]:
    """Write the bundle to ``out`` (atomically); returns its index."""
    files = bundle_files(store, with_models)
    results = [p for p in files if p.parent == store.path("results") and p.suffix == ".json"]
    if not results:
        raise InputError("no results to bundle: run `modelport bench ...` first", store.path("results"))
    for p in files:  # refused here rather than by every machine that merges the bundle
        safe_relpath(store.rel(p), "artifact name", p)
    index = {
        "schema": BUNDLE_SCHEMA,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "device_key": device_key(),
        "machine": machine_info(),
        "run_ids": sorted({json.loads(p.read_text()).get("run_id") or "" for p in results} - {""}),
        "files": {store.rel(p): {"sha256": sha256_file(p), "size": p.stat().st_size} for p in files},
    }
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".partial", delete=False) as tmp:
        try:
            with tarfile.open(fileobj=tmp, mode="w:gz") as tar:
                data = (json.dumps(index, indent=2) + "\n").encode()
                info = tarfile.TarInfo("bundle.json")
                info.size, info.mtime = len(data), int(datetime.now(UTC).timestamp())
                tar.addfile(info, io.BytesIO(data))
                for p in files:
                    tar.add(p, arcname=f"artifacts/{store.rel(p)}", recursive=False)
            tmp.flush()
            Path(tmp.name).replace(out)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return index


@dataclass
class Source:
    """Results read from one folder or bundle, with where they came from."""

    origin: str
    results: list[BackendResult]
    root: Path  # an artifacts folder (a bundle is unpacked into a temp one)


def _load_result(path: Path, origin: str) -> BackendResult:
    """One result of a folder or bundle; its error names where it came from (a bundle's temp copy means nothing)."""
    try:
        return read_result(path)
    except InputError as e:
        raise InputError(f"{path.name}: {e.message}", origin) from None


def read_folder(path: Path, origin: str | None = None) -> Source:
    root = path if (path / "results").is_dir() else path.parent if path.name == "results" else path
    results_dir = root / "results"
    if not results_dir.is_dir():
        raise InputError("neither a bundle nor a folder with results/ in it", origin or path)
    results = [_load_result(p, origin or str(path)) for p in sorted(results_dir.glob("*.json"))]
    if not results:
        raise InputError("no results in this folder", origin or results_dir)
    return Source(str(path), results, root)


# Bounds on what one bundle may unpack: far above a real one (results, raw outputs and manifests are
# KBs; --with-models adds each converted model, a few hundred MB for the largest classifiers) and
# far below what would fill a disk or memory when a crafted or corrupt archive says otherwise.
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 2 * 1024**3
MAX_TOTAL_BYTES = 16 * 1024**3
MAX_INDEX_BYTES = 16 * 1024**2  # bundle.json: one line per file
_CHUNK = 1024**2
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _index(tar: tarfile.TarFile, path: Path) -> tuple[tarfile.TarInfo, dict[str, dict[str, Any]]]:
    """bundle.json, checked: a known schema and, per listed file, a safe name, a sha256 and a bounded size."""
    first = tar.next()
    if first is None or first.name != "bundle.json" or not first.isfile():
        raise InputError("not a modelport bundle (no bundle.json first)", path)
    if first.size > MAX_INDEX_BYTES:
        raise InputError(f"bundle.json is {first.size} bytes, more than {MAX_INDEX_BYTES} (refused)", path)
    try:
        index = json.loads(_contents(tar, first, path).read(MAX_INDEX_BYTES + 1))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"bundle.json is not valid JSON: {e}", path) from None
    schema = index.get("schema") if isinstance(index, dict) else None
    version = _version(schema or "", "modelport.bundle")
    if version is None:
        raise InputError(f"not a modelport bundle (schema {schema!r})", path)
    if version > BUNDLE_VERSION:
        raise InputError(
            f"bundle schema {schema} is newer than this modelport reads ({BUNDLE_SCHEMA}): upgrade modelport to merge it", path
        )
    listed = index.get("files")
    if not isinstance(listed, dict):
        raise InputError("bundle.json has no files index (refused)", path)
    if len(listed) > MAX_MEMBERS:
        raise InputError(f"bundle lists {len(listed)} files, more than {MAX_MEMBERS} (refused)", path)
    total = 0
    for rel, entry in listed.items():
        safe_relpath(rel, "bundle file", path)
        sha, size = (entry.get("sha256"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha) or type(size) is not int or size < 0:
            raise InputError(f"bundle file {rel!r} has no valid sha256 and size in bundle.json (refused)", path)
        if size > MAX_MEMBER_BYTES:
            raise InputError(f"bundle file {rel!r} is {size} bytes, more than {MAX_MEMBER_BYTES} (refused)", path)
        total += size
    if total > MAX_TOTAL_BYTES:
        raise InputError(f"bundle holds {total} bytes, more than {MAX_TOTAL_BYTES} (refused)", path)
    return first, listed


def _land(src: IO[bytes], entry: dict[str, Any], dest: Path, partial: Path, name: str, path: Path) -> None:
    """Stream one member into a temp file while hashing; it lands at ``dest`` only with its listed size and sha256."""
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=partial, delete=False) as out:
        try:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > entry["size"]:
                    raise InputError(f"bundle member {name!r} is larger than its index says (damaged or edited)", path)
                digest.update(chunk)
                out.write(chunk)
            if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                raise InputError(f"bundle member {name!r} does not match its sha256 (damaged or edited)", path)
            out.close()
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(out.name, dest)
        except BaseException:
            Path(out.name).unlink(missing_ok=True)
            raise


def read_bundle(path: Path, into: Path) -> Source:
    """Unpack a bundle into the empty folder ``into``: only files its index lists, each under a checked
    name, within the bounds, and landing only once its sha256 matches."""
    partial = into / ".partial"  # a hidden name: no listed file can be there (safe_relpath refuses it)
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(path, "r:gz") as tar:
            first, listed = _index(tar, path)
            seen: set[str] = set()
            for count, m in enumerate((m for m in tar if m is not first), 1):
                if count > len(listed):
                    raise InputError(f"bundle has more members than its {len(listed)} listed files (refused)", path)
                if not m.name.startswith("artifacts/") or not m.isfile():
                    raise InputError(f"bundle member {m.name!r} is not a plain file under artifacts/ (refused)", path)
                rel = m.name.removeprefix("artifacts/")
                dest = inside(into, rel, "bundle member", path)
                if rel not in listed or rel in seen:
                    raise InputError(f"bundle member {m.name!r} is not in its index or comes twice (refused)", path)
                if m.size != listed[rel]["size"]:
                    raise InputError(f"bundle member {m.name!r} is not the size its index says (damaged or edited)", path)
                _land(_contents(tar, m, path), listed[rel], dest, partial, m.name, path)
                seen.add(rel)
            if missing := sorted(set(listed) - seen):
                raise InputError(f"bundle is missing {len(missing)} listed files (first: {missing[0]})", path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise InputError(f"not a readable bundle: {e}", path) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return read_folder(into, str(path))


def read_source(path: Path, workdir: Path) -> Source:
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise InputError("no such bundle or folder", path)
    into = Path(tempfile.mkdtemp(dir=workdir, prefix="bundle-"))
    return read_bundle(path, into)


@click.group()
def bundle() -> None:
    """Move results between machines: `bundle export` here, `modelport report --merge BUNDLE...` there."""


@bundle.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .tar.gz to write.")
@click.option("--with-models", is_flag=True, help="Also the converted models (every artifact with a manifest).")
@click.pass_obj
def export_cmd(ctx: StepContext, out: Path, with_models: bool) -> None:
    """Results, raw outputs, manifests, report sections of this artifacts folder, each sha256-checked on merge."""
    with ctx.store.lock():
        index = export(ctx.store, out, with_models)
    size = out.stat().st_size
    console.print(f"bundle: {out} ({len(index['files'])} files, {size / 1e6:.2f} MB, device {index['device_key']})", markup=False)
