from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modelport.common.errors import InputError
from modelport.common.images import load_image, resolve_images
from modelport.common.labels import Labels


def save(img: Image.Image, path: Path, **kw: Any) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture
def rgb() -> Image.Image:
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = (200, 10, 10)
    return Image.fromarray(a)


def test_directory_is_sorted_and_filtered(data_dir: Path) -> None:
    imgs = resolve_images(data_dir / "images")
    assert [p.name for p in imgs] == sorted(p.name for p in imgs) and len(imgs) == 12
    assert all(p.suffix == ".jpg" for p in imgs)


def test_list_file_with_comments_and_relative_paths(tmp_path: Path, rgb: Image.Image) -> None:
    (tmp_path / "a").mkdir()
    save(rgb, tmp_path / "a" / "x.png")
    save(rgb, tmp_path / "y.webp")
    lst = tmp_path / "list.txt"
    lst.write_text("# calibration\n\na/x.png  # inline comment\ny.webp\n")
    assert [p.name for p in resolve_images(lst)] == ["x.png", "y.webp"]


def test_list_with_missing_image_names_list_and_line(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("missing.jpg\n")
    with pytest.raises(InputError, match=r"list.txt: line 1: image 'missing.jpg' does not exist"):
        resolve_images(lst)


def test_list_with_only_comments(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="names no images"):
        resolve_images(lst)


def test_list_path_outside_its_folder(tmp_path: Path, rgb: Image.Image) -> None:
    save(rgb, tmp_path / "outside.png")
    (tmp_path / "l").mkdir()
    lst = tmp_path / "l" / "list.txt"
    lst.write_text("../outside.png\n")
    with pytest.raises(InputError, match="outside the list's folder"):
        resolve_images(lst)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no images"):
        resolve_images(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such image"):
        resolve_images(tmp_path / "nope")


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"hello, not a jpeg\n", "not a readable image")])
def test_bad_files_name_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "photo.jpg"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        load_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_jpeg(tmp_path: Path, data_dir: Path) -> None:
    data = (data_dir / "images" / "bird.jpg").read_bytes()
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated"):
        load_image(p)


def test_animated_is_refused(tmp_path: Path, rgb: Image.Image) -> None:
    p = tmp_path / "anim.webp"
    rgb.save(p, save_all=True, append_images=[rgb.rotate(90)], duration=100)
    with pytest.raises(InputError, match="animated"):
        load_image(p)


def test_decompression_bomb_guard(tmp_path: Path) -> None:
    p = save(Image.new("L", (9000, 9000)), tmp_path / "huge.png")
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(p)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_modes_become_rgb(tmp_path: Path, rgb: Image.Image, mode: str) -> None:
    img = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    suffix = ".tiff" if mode in ("CMYK",) else ".png"
    p = save(img, tmp_path / f"m{suffix}")
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    if mode not in ("L", "I;16", "LA"):
        assert out[0, 0, 0] > 150 and out[0, 0, 1] < 60  # still red on the left
    else:
        assert out[0, 0, 0] == out[0, 0, 1] == out[0, 0, 2]


def test_16_bit_grey_keeps_its_range(tmp_path: Path) -> None:
    a = np.full((8, 8), 65535, np.uint16)
    a[:, :4] = 0
    p = save(Image.fromarray(a), tmp_path / "g16.png")
    out = load_image(p)
    assert out[0, 0, 0] == 0 and out[0, 7, 0] == 255


def test_exif_orientation_is_applied(tmp_path: Path, rgb: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    rgb.save(p, exif=exif)
    assert load_image(p).shape == (60, 40, 3)


def test_labels_1001_with_background_and_1000(data_dir: Path, tmp_path: Path) -> None:
    labels = Labels.load(data_dir / "models" / "labels.txt", num_classes=1001)
    assert labels.has_background and labels.name(1, 1001).startswith("tench")
    plain = tmp_path / "l.txt"
    plain.write_text("\n".join(labels.names[1:]) + "\n")
    assert Labels.load(plain, num_classes=1000).name(0, 1000).startswith("tench")
    assert labels.name(0, 1000).startswith("tench")  # 1000-wide output, background-first file
    with pytest.raises(InputError, match="1000 labels fit no convention for a model with 1001 outputs"):
        Labels.load(plain, num_classes=1001)


def test_an_image_too_large_for_pil_is_called_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("1", (10_000, 9_500)).save(path)  # 95 Mpx: PIL's own guard fires before ours
    with pytest.raises(InputError, match="image too large"):
        load_image(path)


def test_messages_carry_plain_numbers_not_numpy_reprs() -> None:
    e = InputError(f"shape {[np.int32(1), np.int64(224)]} scale {np.float32(0.5)!r}")
    assert str(e) == "shape [1, 224] scale 0.5"
