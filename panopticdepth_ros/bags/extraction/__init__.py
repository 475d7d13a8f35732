"""`panopticdepth extract`: a robot's rosbag2 recording -> a Cityscapes-DPS-layout training set (see extractor)."""

from .extractor import extract_bag
from .options import ExtractOptions
from .summary import ExtractSummary

__all__ = ["ExtractOptions", "ExtractSummary", "extract_bag"]
