"""Checkpoints: safe save/load and the converter for released Detectron2 checkpoints."""
