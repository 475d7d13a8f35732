"""Turn a training result into a shippable weights file: model weights only, optionally in half precision.

    python training/export_weights.py OUTPUT_DIR/model_final.safetensors models/panopticdepth_synth_small.safetensors \
        --dtype fp16 --config config/synthetic/PanopticDepth-R18-synthetic-small.yaml

Why: a ResNet-18 PanopticDepth holds ~12 M parameters, 46 MB in float32; float16 halves that with no measurable
change of the scores (loading casts back to the model's float32). Integer buffers (BN batch counters) stay as
they are. The source may be a training checkpoint (``model_*.pth``) or a ``.safetensors`` file; the config
stored in the result's metadata is ``--config`` if given, else the source's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export_weights(source: str | Path, target: str | Path, dtype: str = "fp16",
                   config: str | Path | None = None) -> Path:
    """Write ``source``'s model weights to ``target`` (.safetensors) with floating tensors cast to ``dtype``."""
    from panopticdepth_core.checkpoint.io import checkpoint_config, read_checkpoint, save_checkpoint
    from panopticdepth_core.config import load_config

    state, _ = read_checkpoint(source)
    cast = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}
    cfg = load_config(config) if config else (checkpoint_config(source) if Path(source).suffix == ".safetensors"
                                             else None)
    return save_checkpoint(cast, target, cfg, metadata={"dtype": dtype, "source": Path(source).name})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="model_final.safetensors or a training checkpoint model_*.pth")
    parser.add_argument("target", help="the .safetensors file to write")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="floating-point storage type")
    parser.add_argument("--config", default=None, help="YAML config to embed (default: the source's)")
    args = parser.parse_args(argv)
    path = export_weights(args.source, args.target, args.dtype, args.config)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
