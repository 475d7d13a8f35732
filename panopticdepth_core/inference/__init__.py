"""Inference: the Predictor, point clouds from depth + intrinsics, colour maps and overlays."""
