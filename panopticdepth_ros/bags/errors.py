"""The one error type of the bag tools (`panopticdepth bag`, `extract`, `synth --bag`): a bag, topic or option
that stops the run, with a message that names it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .extraction.summary import ExtractSummary


class BagError(RuntimeError):
    """A problem with an input bag, an output path, a topic or an option; the message says what and where."""


class NoFramesError(BagError):
    """An extraction found no usable frame; ``summary`` says why each was skipped."""

    def __init__(self, message: str, summary: ExtractSummary) -> None:
        super().__init__(message)
        self.summary = summary
