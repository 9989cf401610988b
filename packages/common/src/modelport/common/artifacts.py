"""The artifact store: files with sidecar manifests, written atomically, reused when unchanged.

Every artifact ``X`` has ``X.manifest.json`` (sha256 and size of X, sha256 of each
input, tool + version, options, UTC time). A step whose outputs, inputs, tool
version and options all match its manifests is skipped; ``force`` redoes it. Outputs
are written under temp names in the same folder and renamed into place only when
the whole step (conversion *and* verification) succeeded, so a killed or failed
step never leaves a file a later step would trust.

Inputs are keyed by content (each file's sha256, a file set one key per file). A manifest that
is not one (damaged, another JSON value, not UTF-8) is no manifest: its file is remade, never
trusted. ``check_current`` is what a consumer (bench) asks before using an artifact: is every
input in its lineage still what was recorded when it was made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.markup import escape

from . import __version__
from .envs import artifacts_root
from .errors import InputError
from .log import console
from .memory import children_peak_rss_mb, peak_rss_mb, reset_peak
from .strict_json import json_text

if TYPE_CHECKING:
    from .schema import Agreement

MANIFEST_SCHEMA = "modelport.manifest/1"
SOURCE_MODEL_PREFIX = "source/model."  # what `fetch` imports: the root of every artifact's lineage
# Files a source of a kind keeps beside its model, named as the model with their suffix (a Caffe network's
# weights): inputs of every step that reads the model, never a lineage root of their own.
COMPANIONS: dict[str, tuple[str, ...]] = {"caffe": ("source/model.caffemodel",)}
_COMPANION_FILES = {rel for rels in COMPANIONS.values() for rel in rels}
_sha_cache: dict[tuple[str, int, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    st = path.stat()
    # Size and mtime alone miss a same-size file renamed over this one with its mtime kept (cp -p, rsync -t,
    # a restore); a new inode or status change is caught by the kernel, not by whoever wrote the file.
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def file_inputs(role: str, paths: Sequence[Path]) -> dict[str, Path]:
    """A set of files (eval images, a calibration set) as a step's inputs, one key per file by position and
    name: a list file may name two files of one name in different folders, and keyed by name alone one would
    hide the other from the cache key."""
    return {f"{role}/{i:04d}-{Path(p).name}": Path(p) for i, p in enumerate(paths)}


def _read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file this store wrote, or None when it is missing or is not one (truncated,
    not UTF-8, another JSON value, unreadable): the caller treats that as no record, never as a crash."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _links_ok(value: Any) -> bool:
    return isinstance(value, list) and all(_link_ok(v) for v in value)


def _link_ok(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path"), str) and isinstance(value.get("sha256"), str)


def _manifest_ok(m: dict[str, Any]) -> bool:
    """The fields other steps read have the types they read them as (a damaged manifest is no manifest)."""
    return (
        isinstance(m.get("sha256"), str)
        and isinstance(m.get("inputs", {}), dict)
        and all(_link_ok(v) for v in m.get("inputs", {}).values())
        and _links_ok(m.get("lineage", []))
        and isinstance(m.get("extra", {}), dict)
        and isinstance(m.get("siblings", []), list)
    )


def is_source_model(rel: str) -> bool:
    return rel.startswith(SOURCE_MODEL_PREFIX) and not rel.endswith(".json") and rel not in _COMPANION_FILES


def short(sha: str | None) -> str:
    return (sha or "unknown")[:12]


def _canonical(obj: Any) -> Any:
    """Options as they compare after a JSON round trip (tuples -> lists, Paths -> str)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: Path | str, final: Path) -> None:
    """Rename a finished temp file into place with normal permissions (mkstemp makes 0600)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, final)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temp name beside ``path`` and rename; an OS error names ``path`` (disk full has no file name)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:
            e.filename = str(path)
        raise


def _rerun(rel: str, top: str, rerun: str) -> str:
    return f"run `{rerun}`" if rel == top else f"rerun the step that makes {rel}, then `{rerun}`"


class ArtifactStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else artifacts_root()
        self._known_current: set[tuple[str, ...]] = set()  # outputs this process made or already called up to date

    def first_mention(self, outputs: Sequence[str]) -> bool:
        """True once per set of outputs: a later step reusing what an earlier one just made or checked stays quiet."""
        key = tuple(outputs)
        if key in self._known_current:
            return False
        self._known_current.add(key)
        return True

    def path(self, rel: str | Path) -> Path:
        return self.root / rel

    def rel(self, path: Path) -> str:
        path = Path(path).resolve()
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    @staticmethod
    def manifest_path(path: Path) -> Path:
        return path.with_name(path.name + ".manifest.json")

    def read_manifest(self, rel: str | Path) -> dict[str, Any] | None:
        """The manifest of ``rel``; None when there is none or it is damaged (then nothing trusts the file:
        a step remakes it, ``check_unchanged`` refuses it)."""
        m = _read_json_object(self.manifest_path(self.path(rel)))
        return m if m is not None and _manifest_ok(m) else None

    @staticmethod
    def failure_path(path: Path) -> Path:
        return path.with_name(path.name + ".failed.json")

    def failure(self, path: Path) -> str | None:
        """Why the last attempt to make ``path`` failed, when it did (a success clears it).

        An older good file may still sit at ``path``; it no longer describes what the current
        inputs and options make, so nothing downstream should take it for this run's output.
        """
        if not self.failure_path(path).exists():
            return None
        record = _read_json_object(self.failure_path(path))
        if record is None:
            return "failed (its failure record is unreadable)"
        reason = record.get("reason")
        return reason if isinstance(reason, str) and reason else "failed"

    def failure_agreement(self, path: Path) -> Agreement | None:
        """The agreement measured before the failure (a model below its floors), if one was recorded."""
        from .schema import Agreement

        data = (_read_json_object(self.failure_path(path)) or {}).get("agreement")
        try:
            return Agreement.model_validate(data) if isinstance(data, dict) and data else None
        except ValidationError:
            return None

    def record_failure(self, rel: str, reason: str, **extra: Any) -> None:
        """Say beside ``rel`` that the step making it failed: a consumer reports that instead of
        using an older file or saying only that the file is missing. The next success clears it."""
        record = {"reason": reason, **extra, "created_utc": datetime.now(UTC).isoformat(timespec="seconds")}
        write_atomic(self.failure_path(self.path(rel)), json_text(_canonical(record)))

    def clear_failure(self, rel: str) -> None:
        self.failure_path(self.path(rel)).unlink(missing_ok=True)

    def check_unchanged(self, path: Path) -> None:
        """Refuse an artifact whose bytes differ from what its manifest recorded (edited, swapped, truncated).

        A file with no manifest (brought by the user) is taken as it is; its toolchain checks it on load.
        """
        m = self.manifest_path(path)
        if path.is_file() and m.is_file():
            recorded = (self.read_manifest(self.rel(path)) or {}).get("sha256")
            if recorded != sha256_file(path):
                raise InputError(
                    "changed since the step that made it (sha256 differs from its manifest): rerun that step (or --force)", path
                )

    def current_source(self) -> dict[str, Any] | None:
        """``{"path", "sha256"}`` of the source model `fetch` put here last (None: nothing fetched)."""
        found = []
        for p in self.path("source").glob("model.*"):
            rel = self.rel(p)
            m = self.read_manifest(rel) if is_source_model(rel) and p.is_file() else None
            if m and m.get("sha256"):
                found.append((m.get("created_utc", ""), {"path": rel, "sha256": m["sha256"]}))
        return max(found, key=lambda f: f[0])[1] if found else None

    def lineage(self, path: Path) -> list[dict[str, Any]]:
        """``[{"path", "sha256"}, ...]`` from ``path`` back to the source model it was made from, as
        recorded when each link was made. Ends before the source when that is unknown (no manifest,
        or a manifest older than lineage records)."""
        rel = self.rel(path)
        m = self.read_manifest(rel)
        if m is None:
            return []
        link = {"path": rel, "sha256": m.get("sha256")}
        return [link] if is_source_model(rel) else [link, *m.get("lineage", [])]

    def check_source(self, path: Path, rerun: str) -> list[dict[str, Any]]:
        """Refuse ``path`` when it was made from another source model than the current one; its lineage.

        ``rerun`` is the step that remakes it (e.g. "modelport convert onnx"). A file with no
        manifest (brought by the user) is taken as it is.
        """
        chain = self.lineage(path)
        current = self.current_source()
        if not chain or current is None or self.rel(path) in _COMPANION_FILES:
            return chain  # a companion is imported with its model by the same fetch: the model's lineage speaks for it
        root = chain[-1]
        if not is_source_model(root["path"]):
            raise InputError(f"records no source model it was made from (made by an older modelport): run `{rerun}`", path)
        if root["sha256"] != current["sha256"]:
            raise InputError(
                f"was made from another source model (sha256 {short(root['sha256'])}; "
                f"{current['path']} is now {short(current['sha256'])}): run `{rerun}`",
                path,
            )
        return chain

    def check_current(self, path: Path, rerun: str) -> list[dict[str, Any]]:
        """Refuse ``path`` unless its whole lineage is current; its lineage (as ``check_source``).

        Current: ``path`` is what its manifest recorded, it was made from the current source model, and
        each input its manifest names still has the sha256 recorded when it was used, recursively back to
        what `fetch` imported. ``rerun`` is the step that remakes ``path``; a stale link further up names
        its own file, whose step must run first. An input that is gone (the eval images of another
        machine, a deleted reference: its consumer says what it lacks) cannot be compared and is not held
        against it. A file with no manifest (brought by the user) is taken as it is.
        """
        self.check_unchanged(path)
        chain = self.check_source(path, rerun)
        rel = self.rel(path)
        self._check_inputs(rel, rel, rerun, set())
        return chain

    def _check_inputs(self, rel: str, top: str, rerun: str, seen: set[str]) -> None:
        """Deepest first, so the message names the first step to rerun, not one that would say 'up to date'."""
        m = self.read_manifest(rel)
        if m is None or rel in seen or self._imported(rel, m):
            return
        seen.add(rel)
        for link in m.get("inputs", {}).values():
            dep = self.path(link["path"])
            if not dep.is_file():  # gone, or no regular file (a crafted path to a device): nothing to compare
                continue
            if dep.resolve().is_relative_to(self.root):
                self.check_unchanged(dep)
                self._check_inputs(self.rel(dep), top, rerun, seen)
            now = sha256_file(dep)
            if now != link["sha256"]:
                raise InputError(
                    f"was made from {link['path']} as it was before (sha256 {short(link['sha256'])}, now "
                    f"{short(now)}): {_rerun(rel, top, rerun)}",
                    self.path(rel),
                )

    @staticmethod
    def _imported(rel: str, m: dict[str, Any]) -> bool:
        """What `fetch` wrote (the source model and its siblings): where a lineage starts."""
        return is_source_model(rel) or any(isinstance(s, str) and is_source_model(s) for s in m.get("siblings", []))

    def produce(
        self,
        outputs: str | Sequence[str],
        *,
        inputs: Mapping[str, Path],
        tool: str,
        tool_version: str,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Job:
        outs = [outputs] if isinstance(outputs, str) else list(outputs)
        return Job(self, outs, dict(inputs), tool, tool_version, dict(options or {}), force)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer per artifacts folder: a second pipeline waits instead of interleaving writes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                console.print(f"[yellow]waiting: {escape(str(self.root))} is locked by {escape(holder)}[/]")
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            self._sweep()
            try:
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

    def _sweep(self) -> None:
        """Delete what a SIGKILLed run left: temp files and work dirs. Never trusted (temp names, no
        manifest), and with the lock held no live writer owns them."""
        shutil.rmtree(self.root / ".tmp", ignore_errors=True)
        for stale in self.root.rglob(".*.partial*"):
            if stale.is_file():
                try:
                    stale.unlink(missing_ok=True)
                except OSError:  # a subfolder mounted read-only (compose): its owner sweeps it
                    pass


class Job:
    """One step's outputs. Use as a context manager; see the module docstring."""

    def __init__(
        self,
        store: ArtifactStore,
        outputs: list[str],
        inputs: dict[str, Path],
        tool: str,
        tool_version: str,
        options: dict[str, Any],
        force: bool,
    ):
        self.store, self.outputs, self.inputs = store, outputs, inputs
        self.tool, self.tool_version, self.options, self.force = tool, tool_version, _canonical(options), force
        self.extra: dict[str, Any] = {}
        self._tmps: dict[str, Path] = {}
        self._workdir: Path | None = None
        self.cached = False
        self.started = 0.0

    # -- inside the step
    def tmp(self, rel: str | None = None) -> Path:
        """Temp path for output ``rel`` (default: the only output), same folder and suffix."""
        rel = rel or self._single()
        if rel not in self.outputs:
            raise KeyError(f"{rel} is not an output of this step ({self.outputs})")
        if rel not in self._tmps:
            final = self.store.path(rel)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.partial-", suffix=final.suffix)
            os.close(fd)
            self._tmps[rel] = Path(name)
        return self._tmps[rel]

    @property
    def path(self) -> Path:
        return self.store.path(self._single())

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            tmp_root = self.store.root / ".tmp"
            tmp_root.mkdir(parents=True, exist_ok=True)
            self._workdir = Path(tempfile.mkdtemp(dir=tmp_root))
        return self._workdir

    def record(self, **extra: Any) -> None:
        self.extra.update(_canonical(extra))

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self.store.read_manifest(self.outputs[0])

    def _single(self) -> str:
        if len(self.outputs) != 1:
            raise ValueError("this step has several outputs: name one")
        return self.outputs[0]

    # -- lifecycle
    def _input_hashes(self) -> dict[str, dict[str, str]]:
        out = {}
        for name, p in self.inputs.items():
            p = Path(p)
            if not p.is_file():
                raise InputError(f"input '{name}' does not exist (run the step that makes it first)", p)
            # A swapped or edited artifact is named here, before a toolchain sees it under a temp name.
            self.store.check_unchanged(p)
            out[name] = {"path": self.store.rel(p), "sha256": sha256_file(p)}
        return out

    def _input_lineage(self) -> list[dict[str, Any]]:
        """The lineage this step's outputs inherit: the inputs' (one source model), or refuse a mix."""
        chains = {}
        for name, p in self.inputs.items():
            chain = self.store.lineage(Path(p))
            if chain and is_source_model(chain[-1]["path"]):
                chains[name] = chain
        roots = {c[-1]["sha256"] for c in chains.values()}
        if len(roots) > 1:
            parts = ", ".join(f"{c[0]['path']} from {short(c[-1]['sha256'])}" for c in chains.values())
            raise InputError(
                f"inputs were made from different source models ({parts}): rerun the step that made the older one (or --force)",
                self.store.path(self.outputs[0]),
            )
        current = self.store.current_source()
        if chains and current and roots != {current["sha256"]} and not any(map(is_source_model, self.outputs)):
            first = next(iter(chains.values()))
            raise InputError(
                f"was made from another source model (sha256 {short(first[-1]['sha256'])}; "
                f"{current['path']} is now {short(current['sha256'])}): rerun the step that makes it "
                "first (or --force)",
                self.store.path(first[0]["path"]),
            )
        # The first input is what the outputs are made from (the model; then reference, calibration...).
        return next(iter(chains.values()), [])

    def _is_fresh(self, input_hashes: dict[str, dict[str, str]]) -> bool:
        for rel in self.outputs:
            m, p = self.store.read_manifest(rel), self.store.path(rel)
            if m is None or not p.is_file() or m.get("schema") != MANIFEST_SCHEMA:
                return False
            if m.get("size_bytes") != p.stat().st_size or m.get("sha256") != sha256_file(p):
                return False
            if m.get("inputs") != input_hashes or m.get("options") != self.options:
                return False
            if m.get("tool") != {"name": self.tool, "version": self.tool_version}:
                return False
        return True

    def __enter__(self) -> Job:
        self._hashes = self._input_hashes()
        self._lineage = self._input_lineage()
        self.cached = not self.force and self._is_fresh(self._hashes)
        if self.cached:
            self._clear_failures()
        if self.cached and self.store.first_mention(self.outputs):
            console.print(
                f"   [green]up to date[/]: {', '.join(self.outputs)} (inputs, {self.tool} and options unchanged; --force redoes it)"
            )
        self.started = time.monotonic()
        reset_peak()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None and not self.cached:
                self._commit()
                self.store.first_mention(self.outputs)
                self._clear_failures()
        finally:
            for t in self._tmps.values():
                t.unlink(missing_ok=True)
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)

    def _clear_failures(self) -> None:
        """A success (or an up-to-date output) ends whatever failure was recorded for these files."""
        for rel in self.outputs:
            self.store.clear_failure(rel)

    def _commit(self) -> None:
        missing = [r for r in self.outputs if r not in self._tmps or self._tmps[r].stat().st_size == 0]
        if missing:
            raise RuntimeError(f"step {self.tool} did not write {missing}")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        seconds, peak, children = round(time.monotonic() - self.started, 3), peak_rss_mb(), children_peak_rss_mb()
        for rel in self.outputs:
            final, tmp = self.store.path(rel), self._tmps[rel]
            manifest = {
                "schema": MANIFEST_SCHEMA,
                "artifact": rel,
                "sha256": sha256_file(tmp),
                "size_bytes": tmp.stat().st_size,
                "inputs": self._hashes,
                "tool": {"name": self.tool, "version": self.tool_version},
                "options": self.options,
                "siblings": [o for o in self.outputs if o != rel],
                "created_utc": now,
                "seconds": seconds,
                "peak_rss_mb": peak,  # this process's RSS high-water mark during the step
                **({"children_peak_rss_mb": children} if children else {}),
                "lineage": [] if is_source_model(rel) else self._lineage,
                "modelport_version": __version__,
                **({"extra": self.extra} if self.extra else {}),
            }
            text = json_text(manifest)  # before anything moves: a manifest that cannot be written keeps the old pair
            # Drop the old manifest first: an artifact never sits beside a manifest that is not its own.
            self.store.manifest_path(final).unlink(missing_ok=True)
            publish(tmp, final)
            write_atomic(self.store.manifest_path(final), text)
