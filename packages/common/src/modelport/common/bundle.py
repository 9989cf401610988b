"""`modelport bundle export`: one machine's results as one sha-checked file; reading it (or a folder) back for a merge.

A bundle is a ``.tar.gz`` with ``bundle.json`` first (schema, device key, machine, every
file's sha256 and size) and the files under ``artifacts/``: results (JSON + raw outputs),
the manifests of every artifact, the report sections and depth measurements; the models
themselves only when asked. Reading one checks every member against that index, refuses
anything not listed, and never extracts a path that would leave its folder.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

import click

from .artifacts import ArtifactStore, sha256_file
from .context import StepContext
from .errors import InputError
from .log import console
from .machine import device_key, machine_info
from .results import read_result
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


def export(store: ArtifactStore, out: Path, with_models: bool = False) -> dict:
    """Write the bundle to ``out`` (atomically); returns its index."""
    files = bundle_files(store, with_models)
    results = [p for p in files if p.parent == store.path("results") and p.suffix == ".json"]
    if not results:
        raise InputError("no results to bundle: run `modelport bench ...` first", store.path("results"))
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


def read_folder(path: Path) -> Source:
    root = path if (path / "results").is_dir() else path.parent if path.name == "results" else path
    results_dir = root / "results"
    if not results_dir.is_dir():
        raise InputError("neither a bundle nor a folder with results/ in it", path)
    results = [_load_result(p, str(path)) for p in sorted(results_dir.glob("*.json"))]
    if not results:
        raise InputError("no results in this folder", results_dir)
    return Source(str(path), results, root)


def read_bundle(path: Path, into: Path) -> Source:
    """Unpack a bundle into ``into`` after checking its schema and every member's sha256."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
            if first is None or first.name != "bundle.json" or not first.isfile():
                raise InputError("not a modelport bundle (no bundle.json first)", path)
            index = json.loads(_contents(tar, first, path).read())
            schema = index.get("schema") if isinstance(index, dict) else None
            version = _version(schema or "", "modelport.bundle")
            if version is None:
                raise InputError(f"not a modelport bundle (schema {schema!r})", path)
            if version > BUNDLE_VERSION:
                raise InputError(
                    f"bundle schema {schema} is newer than this modelport reads ({BUNDLE_SCHEMA}): upgrade modelport to merge it",
                    path,
                )
            listed = index.get("files", {})
            seen = set()
            for m in tar:
                if m is first:
                    continue
                rel = m.name.removeprefix("artifacts/")
                parts = PurePosixPath(rel).parts
                if not m.name.startswith("artifacts/") or m.name.startswith("/") or ".." in parts or not m.isfile():
                    raise InputError(f"bundle member {m.name!r} is not a plain file under artifacts/ (refused)", path)
                if rel not in listed:
                    raise InputError(f"bundle member {m.name!r} is not in its index (refused)", path)
                dest = into / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with _contents(tar, m, path) as src, open(dest, "wb") as out:
                    out.write(src.read())
                if sha256_file(dest) != listed[rel]["sha256"]:
                    raise InputError(f"bundle member {m.name!r} does not match its sha256 (damaged or edited)", path)
                seen.add(rel)
            if missing := sorted(set(listed) - seen):
                raise InputError(f"bundle is missing {len(missing)} listed files (first: {missing[0]})", path)
    except (tarfile.TarError, EOFError, OSError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable bundle: {e}", path) from None
    source = read_folder(into)
    source.origin = str(path)
    return source


def read_source(path: Path, workdir: Path) -> Source:
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise InputError("no such bundle or folder", path)
    into = Path(tempfile.mkdtemp(dir=workdir, prefix="bundle-"))
    return read_bundle(path, into)


@click.group()
def bundle():
    """Move results between machines: `bundle export` here, `modelport report --merge BUNDLE...` there."""


@bundle.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .tar.gz to write.")
@click.option("--with-models", is_flag=True, help="Also the converted models (every artifact with a manifest).")
@click.pass_obj
def export_cmd(ctx: StepContext, out: Path, with_models: bool):
    """Results, raw outputs, manifests, report sections of this artifacts folder, each sha256-checked on merge."""
    with ctx.store.lock():
        index = export(ctx.store, out, with_models)
    size = out.stat().st_size
    console.print(f"bundle: {out} ({len(index['files'])} files, {size / 1e6:.2f} MB, device {index['device_key']})", markup=False)
