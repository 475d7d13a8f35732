"""The PanopticDepth network: backbone + FPN, heads, targets, losses and post-processing."""
