"""PanopticDepth core: the network, data, metrics and predictor. Never imports ROS."""

__version__ = "0.1.0"
