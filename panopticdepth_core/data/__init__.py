"""Data sets (Cityscapes, Cityscapes-DPS, SemKITTI-DPS, synthetic scenes, bag extracts), transforms, loaders."""
