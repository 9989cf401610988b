"""Image sets (file, directory or list file) and decoding to RGB uint8.

Decoding handles what real folders contain (EXIF rotation, grayscale, palette,
RGBA, CMYK, 16-bit) and refuses, naming the file, what would silently become a
wrong tensor (empty, truncated, not an image, animated, decompression bombs).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 64_000_000  # ~8000x8000; beyond this a file is more likely a bomb than a photo


def resolve_images(path: str | Path, limit: int | None = None) -> list[Path]:
    """A single image, a directory of images (sorted, not recursive), or a list file."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such image, directory or list file", path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        found = [path]
    else:
        found = _read_list(path)
    return found[:limit] if limit else found


def _read_list(list_file: Path) -> list[Path]:
    """One path a line; ``#`` comments and blank lines ignored; relative to the list's folder."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError("not an image and not a text list of images", list_file) from None
    root = list_file.parent.resolve()
    found = []
    for n, raw in enumerate(lines, 1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        p = (root / entry).resolve()
        if not p.is_relative_to(root):
            raise InputError(f"line {n}: {entry!r} is outside the list's folder {root}", list_file)
        if not p.is_file():
            raise InputError(f"line {n}: image {entry!r} does not exist", list_file)
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"line {n}: {entry!r} is not a supported image type", list_file)
        found.append(p)
    if not found:
        raise InputError("list names no images (only comments or blank lines)", list_file)
    return found


def load_image(path: str | Path) -> np.ndarray:
    """Decode to RGB uint8 HWC, upright per EXIF. Raises InputError naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InputError("empty file", path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    raise InputError(f"animated image ({frames} frames); extract one frame first", path)
                if img.width * img.height > MAX_PIXELS:
                    raise InputError(
                        f"image too large: {img.width}x{img.height} exceeds {MAX_PIXELS} pixels "
                        "(decompression bomb guard); downscale it first",
                        path,
                    )
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL refuses before our own size check can run: the file is an image, just too large.
        raise InputError(
            f"image too large (over {MAX_PIXELS} pixels, the decompression bomb guard); downscale it first", path
        ) from None
    except UnidentifiedImageError as e:
        raise InputError(f"not a readable image ({type(e).__name__})", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"corrupt or truncated image: {e}", path) from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        # 16-bit and 32-bit grey: scale the full range down rather than clip it.
        scale = 257.0 if img.mode.startswith("I;16") or a.max() > 255 else 1.0
        g = np.clip(np.rint(a / scale), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)  # transparent pixels become white, not black
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
