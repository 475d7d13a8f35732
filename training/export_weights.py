"""Turn a training result into a shippable weights file: model weights only, optionally in half precision.

    python training/export_weights.py OUTPUT_DIR/model_final.safetensors models/panopticdepth_synth_small.safetensors \
        --dtype fp16 --config config/synthetic/PanopticDepth-R18-synthetic-small.yaml

The work is ``panopticdepth_core.checkpoint.io.export_weights``; this script only reads the flags.
"""

from __future__ import annotations

import argparse
import sys

from panopticdepth_core.checkpoint.io import EXPORT_DTYPES, CheckpointError, export_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="model_final.safetensors or a training checkpoint model_*.pth")
    parser.add_argument("target", help="the .safetensors file to write")
    parser.add_argument("--dtype", choices=sorted(EXPORT_DTYPES), default="fp16", help="floating-point storage type")
    parser.add_argument("--config", default=None, help="YAML config to embed (default: the source's)")
    args = parser.parse_args(argv)
    try:
        path = export_weights(args.source, args.target, args.dtype, args.config)
    except CheckpointError as error:
        print(f"export_weights.py: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
