"""Give a large frame's memory back to the system once frames are small again.

glibc keeps freed heap pages for reuse, and after a large block is freed it raises its mmap threshold, so the
medium-sized buffers of later frames come from the heap too: after one 4000x3000 frame the source-built Jazzy
node stayed 30-80 MiB above its level before it, for good. ``malloc_trim(0)`` returns the free pages of every
arena; it is called when a frame is at most half the size of the largest since the last call, and again after
the next :attr:`LargeFrameRelease.FOLLOW_UP` frames, not per frame: the DDS layer frees the large frame's
published samples only when later samples replace them in its keep-last history, after the first trim (one live
run stayed 75-95 MiB above its level with a single trim). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _glibc_trim() -> Callable[[], None] | None:
    """``malloc_trim(0)`` of the C library when it is glibc's, else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): no trim to call
        return None
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class LargeFrameRelease:
    """Calls ``release`` when frames shrink to half the pixels of the largest seen since the last shrink, and
    after each of the :attr:`FOLLOW_UP` frames that follow."""

    #: frames after a shrink that release again (memory the large frame's messages held, freed later)
    FOLLOW_UP = 2

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self.release = _glibc_trim() if release is None else release
        self.largest = 0
        self._follow_up = 0  # frames still to release after

    def after_frame(self, pixels: int) -> None:
        """Note a finished frame of ``pixels`` (height x width of its image)."""
        if pixels <= 0 or self.release is None:
            return
        if 2 * pixels <= self.largest:
            self.largest, self._follow_up = pixels, self.FOLLOW_UP
        else:
            self.largest = max(self.largest, pixels)
            if not self._follow_up:
                return
            self._follow_up -= 1
        self.release()
