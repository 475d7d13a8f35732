"""Training and evaluation entry points, data preparation."""
