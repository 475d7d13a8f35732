"""Configuration: defaults, YAML files with ``_BASE_`` inheritance, ``KEY VALUE`` overrides, validation."""

from .defaults import get_default_config
from .loading import load_config, validate_config
from .node import CfgNode, ConfigError

__all__ = ["CfgNode", "ConfigError", "get_default_config", "load_config", "validate_config"]
