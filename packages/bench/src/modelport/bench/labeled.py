"""`modelport bench --labeled SRC`: top-1/top-5 accuracy against ground truth, per backend.

SRC is either
- a file of ``image<TAB>label`` lines (``#`` comments and blank lines skipped, image paths
  relative to the file), or
- a folder with one sub-folder per class (``n01530575/``, ``chickadee/`` or ``20/``).
A label is an ImageNet class id (0-999, the 1000-class convention), a WordNet synset
(needs ``synsets.txt`` beside SRC: one wnid per line in class-id order, as ImageNet's
LOC_synset_mapping.txt), or a class name from the labels file (the whole line or one of its
comma-separated names, case-insensitive). Ids and names map to output indices through
``modelport.common.labels``, so 1001-wide (background-first) and 1000-wide models both work.

Accuracy comes with a Wilson 95% interval: with tens of images it is wide, and the report
says so. The drop vs the reference (the source model) is computed by the report from both files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.artifacts import write_atomic
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.images import load_image
from modelport.common.labels import Labels
from modelport.common.machine import machine_info
from modelport.common.preprocess import prepare
from modelport.common.strict_json import json_text
from modelport.runtime.registry import runtime_class
from modelport.runtime.run import run_outputs

from .tuning import config_with

LABELED_SCHEMA = "modelport.labeled/1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SYNSET = re.compile(r"^n\d{8}$")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Sample:
    image: Path
    label: str
    where: str  # "file:line" or the class folder: what an error names


def read_labeled(src: str | Path) -> list[Sample]:
    src = Path(src)
    if src.is_file():
        return _read_list(src)
    if src.is_dir():
        return _read_folders(src)
    raise InputError("labeled set not found (a folder per class or an image<TAB>label file)", src)


def _read_list(path: Path) -> list[Sample]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError("labeled list is not UTF-8 text", path) from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise InputError(f"line {n}: expected image<TAB>label, got {line!r}", path)
        image = (path.parent / parts[0].strip()).resolve()
        if not image.is_file():
            raise InputError(f"line {n}: image {parts[0].strip()} not found", path)
        out.append(Sample(image, parts[1].strip(), f"{path}:{n}"))
    if not out:
        raise InputError("labeled list has no image<TAB>label lines", path)
    return out


def _read_folders(root: Path) -> list[Sample]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            out.append(Sample(image.resolve(), folder.name, str(folder)))
    if not out:
        raise InputError("no class folders with images in the labeled folder", root)
    return out


class LabelResolver:
    """Ground-truth label text -> output index of a ``classes``-wide model."""

    def __init__(self, labels: Labels, classes: int, synsets: list[str] | None = None):
        self.labels, self.classes, self.synsets = labels, classes, synsets
        # output index = labels-file line - shift; id k (0-999) = line k + background
        self.shift = labels.check(classes)
        self.background = 1 if labels.has_background and classes == len(labels.names) else 0
        self.by_name: dict[str, set[int]] = {}
        for line, text in enumerate(labels.names):
            for name in {text.strip().lower(), *(s.strip().lower() for s in text.split(","))}:
                self.by_name.setdefault(name, set()).add(line)

    def index(self, text: str, where: str) -> int:
        if text.isdigit():
            k = int(text)
            if not 0 <= k < self.classes - self.background:
                raise InputError(f"class id {k} outside 0..{self.classes - self.background - 1}", where)
            return k + self.background
        if SYNSET.match(text):
            if self.synsets is None:
                raise InputError(f"synset label {text} needs synsets.txt beside the labeled set (wnid per class id)", where)
            if text not in self.synsets:
                raise InputError(f"synset {text} is not in synsets.txt", where)
            return self.synsets.index(text) + self.background
        lines = self.by_name.get(text.strip().lower(), set())
        if not lines:
            raise InputError(f"label {text!r} is not a class name in {self.labels.path}", where)
        if len(lines) > 1:
            raise InputError(f"label {text!r} names several classes (lines {sorted(lines)}): use the whole line or the id", where)
        line = next(iter(lines))
        if line - self.shift < 0:
            raise InputError(f"label {text!r} is the background class, which this {self.classes}-class model lacks", where)
        return line - self.shift


def read_synsets(src: Path) -> list[str] | None:
    path = (src if src.is_dir() else src.parent) / "synsets.txt"
    if not path.is_file():
        return None
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (sound at small n and at 0% / 100%)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score(outputs: np.ndarray, truth: list[int]) -> dict[str, Any]:
    top5 = np.argsort(-outputs, axis=1)[:, :5]
    hit1 = top5[:, 0] == np.asarray(truth)
    hit5 = (top5 == np.asarray(truth)[:, None]).any(axis=1)
    n, k1, k5 = len(truth), int(hit1.sum()), int(hit5.sum())
    return {
        "images": n,
        "top1_correct": k1,
        "top5_correct": k5,
        "top1": k1 / n,
        "top5": k5 / n,
        "top1_ci95": wilson(k1, n),
        "top5_ci95": wilson(k5, n),
        "hit1": hit1.tolist(),
        "hit5": hit5.tolist(),
        "top5_indices": top5.tolist(),
    }


def labeled_accuracy(ctx: StepContext, key: str, src: str | Path, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``key`` on the labeled set; the depth/labeled-<key>.json entry."""
    samples = read_labeled(src)
    cfg = config_with(ctx.config, settings or {})
    prepared = []
    for s in samples:
        prepared.append(prepare(load_image(s.image), cfg.input))
    cls = runtime_class(key)
    with cls.from_store(ctx.store, cfg) as rt:
        outputs = run_outputs(rt, prepared, cfg.input)
    resolver = LabelResolver(ctx.labels, outputs.shape[1], read_synsets(Path(src)))
    truth = [resolver.index(s.label, s.where) for s in samples]
    result = score(outputs, truth)
    return {
        "schema": LABELED_SCHEMA,
        "key": key,
        "name": cls.display,
        "env": ctx.env,
        "source": str(Path(src).resolve()),
        "classes": int(outputs.shape[1]),
        "label_convention": "1001 (background first)" if resolver.background else "1000",
        "image_names": [s.image.name for s in samples],
        "labels": [s.label for s in samples],
        "truth": truth,
        **result,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_labeled(ctx: StepContext, data: dict[str, Any]) -> None:
    write_atomic(ctx.store.path(f"depth/labeled-{data['key']}.json"), json_text(data))
