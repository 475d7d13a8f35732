"""The errors of ``panopticdepth extract``, in a module of their own so that every part of the engine can raise them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .extract import ExtractSummary


class ExtractError(RuntimeError):
    """A problem with the bag or the options that stops the extraction; the message says what and where."""


class NoFramesError(ExtractError):
    """Every frame was skipped; ``summary`` says why."""

    def __init__(self, message: str, summary: ExtractSummary) -> None:
        super().__init__(message)
        self.summary = summary
