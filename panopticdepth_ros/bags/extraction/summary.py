"""The counts of one `panopticdepth extract` run, printed at the end and saved in dataset.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from panopticdepth_core.data.classes import LABEL_DIVISOR

#: skip reason -> what the summary says
SKIP_REASONS = {
    "no_camera_info": "no camera_info within the time tolerance",
    "no_depth": "no depth image within the time tolerance",
    "no_lidar": "no LiDAR cloud within the time tolerance",
    "no_semantic": "no semantic label image within the time tolerance",
    "no_instance": "no instance label image within the time tolerance",
    "no_panoptic": "no panoptic label image within the time tolerance",
    "no_transform": "no LiDAR -> camera transform on /tf near the image stamp",
    "bad_stamp": "image message without a readable header stamp",
    "bad_image": "image could not be decoded",
    "bad_camera_info": "camera_info invalid for the image",
    "bad_depth": "depth image could not be decoded",
    "bad_lidar": "LiDAR cloud could not be decoded",
    "bad_labels": "label image could not be decoded",
    "too_many_instances": f"more than {LABEL_DIVISOR - 1} thing instances",
}


@dataclass
class ExtractSummary:
    """Counts of one extraction (printed, and saved in dataset.json)."""

    bag: str
    output: str | None = None
    image_messages: int = 0
    subsampled: int = 0  # images left out by --every / --max-rate
    selected: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # skip reason -> first detailed message
    notes: list[str] = field(default_factory=list)  # how the bag was read: types assumed, files missing, ...

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if detail and reason not in self.examples:
            self.examples[reason] = detail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, tolerance: float | None = None) -> str:
        """Human-readable lines."""
        lines = [f"bag {self.bag}: {self.image_messages} images, {self.subsampled} left out by --every/--max-rate, "
                 f"{self.selected} selected, {self.written} written, {sum(self.skipped.values())} skipped"]
        lines += [f"  {note}" for note in self.notes]
        for reason, count in sorted(self.skipped.items(), key=lambda item: -item[1]):
            text = SKIP_REASONS.get(reason, reason)
            if tolerance is not None and "time tolerance" in text:
                text = text.replace("the time tolerance", f"+-{tolerance:g} s")
            example = f" (first: {self.examples[reason]})" if reason in self.examples else ""
            lines.append(f"  skipped {count:6d}: {text}{example}")
        if self.output:
            lines.append(f"output: {self.output}")
        return "\n".join(lines)
