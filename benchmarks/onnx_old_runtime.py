"""Does an exported model run on an older onnxruntime (ROS 2 Humble robots: onnxruntime 1.12.1, numpy 1.21.5)?

Two steps, in two environments:

    # with torch, onnx and a current onnxruntime: export the models, save an input and torch's outputs
    python benchmarks/onnx_old_runtime.py write DIR [--config CFG ...]
    # with only numpy and the old onnxruntime (no torch needed), e.g. a Python 3.10 venv with onnxruntime==1.12.1
    python benchmarks/onnx_old_runtime.py check DIR

``check`` prints, per model, the largest difference of every output from torch's; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "config" / "synthetic" / "PanopticDepth-R18-synthetic-small.yaml",
           REPO / "config" / "cityscapes_dps" / "PanopticDepth-R50-cityscapes-dps.yaml"]


def write(folder: Path, configs: list[str], size: tuple[int, int]) -> None:
    import torch
    from seeded_model import calibrated_model

    from panopticdepth_core.inference.onnx_backend import _ExportedNetwork, export_onnx, output_names

    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for config in configs:
        cfg, model = calibrated_model(config, seed=0)
        name = Path(config).stem
        export_onnx(model, cfg, folder / f"{name}.onnx")  # dynamic size
        image = (torch.rand(3, *size, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
        batch, _, _ = model.preprocess([image])
        with torch.inference_mode():
            outputs = _ExportedNetwork(model).eval()(batch)
        names = output_names(len(model.in_features), model.depth_on)
        np.savez(folder / f"{name}.npz", image=batch.numpy(), **{n: o.numpy() for n, o in zip(names, outputs)})
        index.append(name)
    (folder / "index.json").write_text(json.dumps(index))
    print(f"wrote {index} to {folder}")


def check(folder: Path) -> None:
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}")
    for name in json.loads((folder / "index.json").read_text()):
        data = np.load(folder / f"{name}.npz")
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {"image": data["image"]})
        worst = max((float(np.abs(v - data[n]).max() / max(1.0, np.abs(data[n]).max())), n)
                    for n, v in zip(names, values))
        print(f"{name}: {len(names)} outputs, largest difference from torch (relative to the output's largest "
              f"value, or absolute below 1) {worst[0]:.1e} in {worst[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("write", "check"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--config", nargs="+", default=[str(c) for c in CONFIGS])
    parser.add_argument("--size", default="256x384", help="input size of the check (any multiple of 128)")
    args = parser.parse_args()
    if args.step == "write":
        write(args.folder, args.config, tuple(int(v) for v in args.size.split("x")))
    else:
        check(args.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
