"""Safe image reading for the data sets: every failure names the file and says what was expected.

Data sets are large and a single corrupt PNG deep into an epoch should stop training with a message that
names that file, not with a bare ``OSError`` from Pillow in a worker process. ``DataError`` takes one string
argument, so PyTorch's DataLoader can re-raise it in the main process with the worker's message intact.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
# Pillow modes of single-channel 16-bit images, as opened from PNG files on any byte order / Pillow version.
MODES_16BIT = ("I;16", "I;16B", "I;16L", "I")
MODES_8BIT = ("L", "P")


class DataError(ValueError):
    """A data file is missing, corrupt or not in the expected format; the message names the file."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


@dataclass(frozen=True)
class PngHeader:
    """What a PNG's IHDR chunk says, read without decoding pixels."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def kind(self) -> str:
        return f"{self.bit_depth}-bit {_PNG_COLOR_TYPES.get(self.color_type, f'colour type {self.color_type}')}"


def read_png_header(path: str | Path) -> PngHeader:
    """Width, height, bit depth and colour type from the first 33 bytes (cheap checks of whole folders)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", path) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})", path) from exc
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file (no PNG signature and IHDR header)", path)
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    return PngHeader(width, height, bit_depth, color_type)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a PNG or JPEG without decoding its pixels."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        header = read_png_header(path)
        return header.height, header.width
    with _open(path) as im:
        return im.height, im.width


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", path) from None
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a readable image file ({exc})", path) from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc})", path) from exc


def _check_png_complete(path: Path) -> None:
    """Pillow decodes a PNG that lost its end (IEND) without complaint; a file cut off there is still corrupt."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - len(_PNG_IEND)))
            tail = f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})", path) from exc
    if tail != _PNG_IEND:
        raise DataError(f"{path}: truncated PNG (the file does not end with an IEND chunk)", path)


def _load(path: Path, modes: tuple[str, ...], expected: str, expected_size: tuple[int, int] | None) -> np.ndarray:
    path = Path(path)
    with _open(path) as im:
        if im.mode not in modes:
            raise DataError(f"{path}: expected {expected}, got a {_describe(im)} image", path)
        if expected_size is not None and (im.height, im.width) != tuple(expected_size):
            raise DataError(
                f"{path}: expected size {expected_size[1]}x{expected_size[0]} (WxH) like its image, "
                f"got {im.width}x{im.height}",
                path,
            )
        if im.format == "PNG":
            _check_png_complete(path)
        try:
            im.load()
            arr = np.array(im)  # a writable copy (np.asarray of a Pillow image is read-only)
        except (OSError, SyntaxError, ValueError, zlib.error, struct.error, EOFError) as exc:
            raise DataError(f"{path}: corrupt or truncated image ({exc})", path) from exc
    return arr


def _describe(im: Image.Image) -> str:
    names = {"L": "8-bit grayscale", "P": "8-bit palette", "RGB": "8-bit RGB", "RGBA": "8-bit RGBA",
             "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
             "1": "1-bit", "LA": "8-bit grayscale+alpha"}
    return f"{names.get(im.mode, 'mode ' + im.mode)} ({im.format or 'unknown format'}, mode {im.mode!r})"


def read_rgb(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit RGB PNG or JPEG -> (H, W, 3) uint8."""
    arr = _load(Path(path), ("RGB",), "an 8-bit RGB image", expected_size)
    return arr


def read_uint16(path: str | Path, what: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A 16-bit single-channel PNG (labels with values >= 256, depth * 256) -> (H, W) int32.

    ``what`` says what the file holds, for the error message (e.g. "depth (uint16, metres * 256)").
    """
    path = Path(path)
    arr = _load(path, MODES_16BIT, f"a 16-bit single-channel PNG holding {what}", expected_size)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a single-channel image holding {what}, got shape {arr.shape}", path)
    if arr.dtype == np.int32 and (arr.min(initial=0) < 0 or arr.max(initial=0) > 65535):
        raise DataError(f"{path}: expected 16-bit values holding {what}, got values outside 0..65535", path)
    return arr.astype(np.int32)


def read_label(path: str | Path, what: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """An 8- or 16-bit single-channel label PNG -> (H, W) int32 (palette PNGs give their indices)."""
    path = Path(path)
    arr = _load(path, MODES_8BIT + MODES_16BIT, f"an 8- or 16-bit single-channel PNG holding {what}", expected_size)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a single-channel image holding {what}, got shape {arr.shape}", path)
    return arr.astype(np.int32)
