"""A folder of images with one subfolder per class (PNG, JPEG, BMP, GIF, TIFF, WebP).

Either `train/` and `test/` folders, each with the class folders, or the class folders alone (the caller
splits a test part off). Class names are the folder names. Images are decoded in parallel threads (Pillow
releases the GIL while it decodes), and the decoded arrays are cached under ~/.cache, keyed by every file's
path, size and modification time and by the decoding settings, so a sweep's later workers and commands
read one .npy file instead of decoding again; a cache file that cannot be read is decoded again and replaced.
Hidden files and folders (macOS' `._name.png`, `.ipynb_checkpoints/`) are not data. Pictures with 16-bit
gray values are scaled to 8 bits (65535 -> 255), as `sweep predict` decodes them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.data.memory import check_images_fit
from pipeline.data.records import RawData, checked
from pipeline.data.split import stratified_split
from pipeline.errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CACHE = Path.home() / ".cache" / "keras-sweep-pipeline"
MODES = {"grayscale": "L", "rgb": "RGB"}
GRAY = {"L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # gray modes; anything else (palette, RGBA) is colour
WIDE = 65535  # the largest 16-bit value, which becomes 255


def has_split_folders(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def list_classes(root: Path) -> dict[str, list[Path]]:
    """Each class folder's image files, in a stable order; a class folder without images is refused."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: holds no class folders; expected one subfolder of images per class")
    classes = {}
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                       and not _is_hidden(p.relative_to(folder)))
        if not files:
            raise DataError(f"{folder}: class folder without images ({', '.join(sorted(SUFFIXES))})")
        classes[folder.name] = files
    return classes


def _is_hidden(relative: Path) -> bool:
    """A dot file, or a file in a dot folder: an operating system's or a tool's, never a picture of the class."""
    return any(part.startswith(".") for part in relative.parts)


def load_images(files: list[Path], size: tuple[int, int] | None, color: str | None,
                workers: int = 1, cache: Path = CACHE) -> np.ndarray:
    """uint8 N x H x W (grayscale) or N x H x W x 3 (rgb), decoded once and cached in `cache`; refused before
    decoding when the arrays would not fit in memory."""
    cached = cache / f"{_cache_key(files, size, color)}.npy"
    images = _read_cache(cached, len(files))
    if images is not None:
        return images
    with ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) * 4)) as pool:
        headers = list(pool.map(_header, files))
        if size is None:
            _check_one_size(files, [header[1] for header in headers])
        mode = MODES[color] if color else ("RGB" if any(h[0] not in GRAY for h in headers) else "L")
        height, width = size or (headers[0][1][1], headers[0][1][0])
        check_images_fit(len(files), (height, width, 3) if mode == "RGB" else (height, width), workers,
                         str(files[0].parent.parent))
        images = np.stack(list(pool.map(lambda path: decode(path, size, mode), files)))
    _store(cached, images)
    return images


@contextlib.contextmanager
def _opened(path: Path) -> Iterator:
    """A picture opened with Pillow. What Pillow raises for a file that is no picture, or one too large to
    decode safely (its decompression-bomb guard), becomes one DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            yield image
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused, the image is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode the image ({exc}); expected a picture "
                        f"({', '.join(sorted(SUFFIXES))})") from None


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """An image's mode and size, read from its header alone."""
    with _opened(path) as image:
        return image.mode, image.size


def decode(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """One picture as uint8, converted to `mode` ("L" or "RGB") and resized to `size` (height, width)."""
    from PIL import Image

    with _opened(path) as image:
        converted = _eight_bit(path, image).convert(mode)
        if size is not None and converted.size != (size[1], size[0]):
            converted = converted.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        return np.asarray(converted, dtype=np.uint8)


def _eight_bit(path: Path, image):
    """A picture whose gray values are wider than a byte, scaled by one fixed factor (65535 -> 255) so a value
    means the same brightness in every picture, in training and in predict; Pillow's own conversion clips
    them at 255, and scaling each picture by its own range would make a value mean different things."""
    from PIL import Image

    if image.mode == "F":
        raise DataError(f"{path}: holds floating-point pixels; save it as an 8- or 16-bit picture")
    if not image.mode.startswith("I"):
        return image
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > WIDE):
        raise DataError(f"{path}: holds pixel values from {values.min()} to {values.max()}; expected an 8- or "
                        "16-bit picture (0..65535)")
    return Image.fromarray(((values.astype(np.uint32) * 255 + WIDE // 2) // WIDE).astype(np.uint8))


def _check_one_size(files: list[Path], sizes: list[tuple[int, int]]) -> None:
    """Without data.image_size every image must have one size: name two that differ."""
    for path, size in zip(files, sizes):
        if size != sizes[0]:
            raise DataError(f"images differ in size: {files[0]} is {sizes[0][0]}x{sizes[0][1]}, {path} is "
                            f"{size[0]}x{size[1]}; set data.image_size: [height, width] to resize them all")


def _cache_key(files: list[Path], size, color: str | None) -> str:
    sha = hashlib.sha256(f"{size} {color}".encode())
    for path in files:
        stat = path.stat()
        sha.update(f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()[:24]


def _read_cache(path: Path, count: int) -> np.ndarray | None:
    """The cached images, or None for a miss: no file, or one that is truncated or damaged (a full disk, a
    copy cut short), which the caller decodes again and replaces."""
    try:
        images = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    usable = isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim >= 3 and len(images) == count
    return images if usable else None


def _store(path: Path, images: np.ndarray) -> None:
    """Best effort: a cache that cannot be written only costs the next load its decoding. Written beside
    the file and renamed into place, so a reader never sees half of it; a write cut short (a full disk)
    leaves nothing behind."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(partial, images)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def load_image_folder(root: Path, size: tuple[int, int] | None, color: str | None, test_fraction: float,
                      seed: int, workers: int = 1, cache: Path = CACHE) -> RawData:
    """train/ and test/ class folders as they are, or one set of class folders split by class (seeded)."""
    if has_split_folders(root):
        train, test = list_classes(root / "train"), list_classes(root / "test")
        unseen = sorted(set(test) - set(train))
        if unseen:
            raise DataError(f"{root / 'test'}: classes training never saw: {', '.join(unseen)}; every test class "
                            "needs a folder under train/ too")
        names = tuple(train)
        files = [f for name in names for f in train[name]] + [f for name in test for f in test[name]]
        labels = np.array([names.index(name) for part in (train, test) for name in part for _ in part[name]])
        images = load_images(files, size, color, workers, cache)
        cut = sum(len(found) for found in train.values())
        return checked(RawData(images[:cut], labels[:cut], images[cut:], labels[cut:], str(root.resolve()), names))
    classes = list_classes(root)
    names = tuple(classes)
    labels = np.array([index for index, name in enumerate(names) for _ in classes[name]])
    images = load_images([f for name in names for f in classes[name]], size, color, workers, cache)
    x_train, x_test, y_train, y_test = stratified_split(images, labels, test_fraction, seed, str(root),
                                                        "data.test_fraction")
    return checked(RawData(x_train, y_train, x_test, y_test, str(root.resolve()), names))
