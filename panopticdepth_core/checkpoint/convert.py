"""Convert released PanopticDepth / PanopticFCN Detectron2 checkpoints (.pth) to our safetensors layout.

Every key of the released state dict is renamed by one rule of :data:`RULES` (Detectron2 / released module
names -> ours), checked against the shape our model has for the given config, and the conversion fails if any
key is left over or any of our keys is not produced. The only tolerated differences are batch-norm
bookkeeping (``num_batches_tracked``), which frozen batch norms do not have, and the pixel statistics a
checkpoint may carry (ours come from the config). The files are read without running pickled code:
``torch.load(weights_only=True)`` with only numpy's array-rebuilding functions allowed, or, for plain pickles,
an unpickler that can build nothing but dicts, lists and numpy arrays.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import CfgNode, load_config
from .io import CheckpointError, save_checkpoint

#: fx in pixels of Cityscapes' left camera at 2048x1024 (``intrinsic.fx`` of its camera/*.json calibration files):
#: the canonical focal length of the released depth models, trained on full-resolution Cityscapes-DPS frames.
CITYSCAPES_FOCAL = 2262.52

# ----------------------------------------------------------------------------------------------- key rules
_TOWERS = {  # released tower prefix -> (our module, released name of its convs)
    "position_head.position_head": ("position_head", "position_head_head"),
    "kernel_head.kernel_head": ("kernel_head", "kernel_head_head"),
    "depth_kernel_head.depth_kernel_head": ("depth_kernel_head", "depth_kernel_head_head"),
    "feature_encoder.encode_head": ("feature_encoder", "encode_head_head"),
    "depth_encode_head.encode_head": ("depth_encoder", "depth_encode_head_head"),
}
_TOWER_PARTS = (  # released suffix inside one tower conv -> ours, and both written out for the docs
    (r"offset_mask_conv\.(weight|bias)", "conv.offset_mask.{0}", "offset_mask_conv.{weight,bias}",
     "conv.offset_mask.{weight,bias}"),
    (r"dcnv2\.(weight|bias)", "conv.{0}", "dcnv2.{weight,bias}", "conv.{weight,bias}"),
    (r"dcnv2\.norm\.(\w+)", "norm.{0}", "dcnv2.norm.{p}", "norm.{p}"),
    (r"(weight|bias)", "conv.{0}", "{weight,bias}", "conv.{weight,bias}"),
    (r"norm\.(\w+)", "norm.{0}", "norm.{p}", "norm.{p}"),
)
_RENAMED = {  # released module -> ours, parameters keep their names
    "position_head.out_inst": "position_head.out_inst",
    "position_head.out_sem": "position_head.out_sem",
    "kernel_head.out_conv": "kernel_head.out_conv",
    "depth_kernel_head.out_depth_kernel": "depth_kernel_head.out_conv",
    "depth_encode_head.embed_extractor": "depth_encoder.out_conv",
    "thing_generator.embed_extractor": "thing_projection.proj",
    "stuff_generator.embed_extractor": "stuff_projection.proj",
    "backbone.top_block.p6": "backbone.fpn.p6",
    "backbone.top_block.p7": "backbone.fpn.p7",
}


@dataclass(frozen=True)
class Rule:
    """One renaming rule: a released-key pattern, how to build our key, and a docs example."""

    pattern: str  # regex on the released key
    build: Callable[[re.Match], str]
    released: str  # human-readable released form for docs/checkpoints.md
    ours: str  # human-readable form of our key


def _tower_rules() -> list[Rule]:
    rules = []
    for released, (ours, conv_name) in _TOWERS.items():
        for part, target, released_doc, ours_doc in _TOWER_PARTS:
            rules.append(Rule(
                rf"{re.escape(released)}\.{conv_name}_(\d+)\.{part}",
                lambda m, ours=ours, target=target: f"{ours}.tower.{int(m.group(1)) - 1}." + target.format(m.group(2)),
                f"{released}.{conv_name}_{{k}}.{released_doc}",
                f"{ours}.tower.{{k-1}}.{ours_doc}"))
    return rules


RULES: list[Rule] = [
    Rule(r"backbone\.bottom_up\.stem\.conv1\.weight", lambda m: "backbone.body.conv1.weight",
         "backbone.bottom_up.stem.conv1.weight", "backbone.body.conv1.weight"),
    Rule(r"backbone\.bottom_up\.stem\.conv1\.norm\.(\w+)", lambda m: f"backbone.body.bn1.{m.group(1)}",
         "backbone.bottom_up.stem.conv1.norm.{p}", "backbone.body.bn1.{p}"),
    Rule(r"backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.weight",
         lambda m: f"backbone.body.layer{int(m.group(1)) - 1}.{m.group(2)}.conv{m.group(3)}.weight",
         "backbone.bottom_up.res{s}.{b}.conv{j}.weight", "backbone.body.layer{s-1}.{b}.conv{j}.weight"),
    Rule(r"backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.norm\.(\w+)",
         lambda m: f"backbone.body.layer{int(m.group(1)) - 1}.{m.group(2)}.bn{m.group(3)}.{m.group(4)}",
         "backbone.bottom_up.res{s}.{b}.conv{j}.norm.{p}", "backbone.body.layer{s-1}.{b}.bn{j}.{p}"),
    Rule(r"backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.weight",
         lambda m: f"backbone.body.layer{int(m.group(1)) - 1}.{m.group(2)}.downsample.0.weight",
         "backbone.bottom_up.res{s}.{b}.shortcut.weight", "backbone.body.layer{s-1}.{b}.downsample.0.weight"),
    Rule(r"backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.norm\.(\w+)",
         lambda m: f"backbone.body.layer{int(m.group(1)) - 1}.{m.group(2)}.downsample.1.{m.group(3)}",
         "backbone.bottom_up.res{s}.{b}.shortcut.norm.{p}", "backbone.body.layer{s-1}.{b}.downsample.1.{p}"),
    Rule(r"backbone\.fpn_(lateral|output)([2-5])\.(weight|bias)",
         lambda m: f"backbone.fpn.{m.group(1)}.{int(m.group(2)) - 2}.conv.{m.group(3)}",
         "backbone.fpn_{lateral,output}{s}.{weight,bias}", "backbone.fpn.{lateral,output}.{s-2}.conv.{weight,bias}"),
    Rule(r"backbone\.fpn_(lateral|output)([2-5])\.norm\.(\w+)",
         lambda m: f"backbone.fpn.{m.group(1)}.{int(m.group(2)) - 2}.norm.{m.group(3)}",
         "backbone.fpn_{lateral,output}{s}.norm.{p}", "backbone.fpn.{lateral,output}.{s-2}.norm.{p}"),
    Rule(r"semantic_fpn\.(p[2-5])\.(\d+)\.(weight|bias)",
         lambda m: f"semantic_fpn.heads.{m.group(1)}.{m.group(2)}.conv.{m.group(3)}",
         "semantic_fpn.p{s}.{i}.{weight,bias}", "semantic_fpn.heads.p{s}.{i}.conv.{weight,bias}"),
    Rule(r"semantic_fpn\.(p[2-5])\.(\d+)\.norm\.(\w+)",
         lambda m: f"semantic_fpn.heads.{m.group(1)}.{m.group(2)}.norm.{m.group(3)}",
         "semantic_fpn.p{s}.{i}.norm.{p}", "semantic_fpn.heads.p{s}.{i}.norm.{p}"),
    *_tower_rules(),
    *[Rule(rf"{re.escape(src)}\.(weight|bias)", lambda m, dst=dst: f"{dst}.{m.group(1)}",
           f"{src}.{{weight,bias}}", f"{dst}.{{weight,bias}}") for src, dst in _RENAMED.items()],
]
_COMPILED = [(re.compile(rule.pattern + r"\Z"), rule) for rule in RULES]

#: Released keys that carry no weights of ours: (pattern, reason).
_IGNORED_KEYS = ((re.compile(r"(pixel_mean|pixel_std)\Z"), "input normalisation comes from MODEL.PIXEL_MEAN/STD"),)
_NBT = "num_batches_tracked"


def map_key(key: str) -> str | None:
    """Our name for a released key, or None if no rule matches."""
    for regex, rule in _COMPILED:
        m = regex.match(key)
        if m:
            return rule.build(m)
    return None


# ------------------------------------------------------------------------------------------ safe reading
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles store bytes as encode(str, "latin1")
}


def _numpy_multiarray():  # noqa: ANN202 - a module
    """numpy's multiarray module: numpy._core in numpy 2, numpy.core before. numpy 1.26 also has a numpy._core
    stub (for reading numpy 2 pickles) that shows up as an attribute once imported, without ``multiarray`` as one,
    so import the submodule by name rather than testing attributes."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")


def _numpy_safe_globals() -> list:
    multiarray = _numpy_multiarray()
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                                           np.int64, np.uint8, np.bool_)]
    return [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, *dtypes]


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Plain-pickle reader that can only build containers and numpy arrays (Detectron2 .pkl files)."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's API
        if (module, name) in _NUMPY_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def _unsafe_globals(path: Path) -> str:
    """The pickled globals ``weights_only`` refuses (torch >= 2.5), to tell the user what is in the file."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - older torch, or not a torch zip file
        return ""
    allowed = {f"{g.__module__}.{g.__name__}" for g in _numpy_safe_globals()}
    return ", ".join([g for g in found if g not in allowed][:5])


def read_released_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], list[str]]:
    """The released ``model`` state dict as tensors, and the names of the other top-level entries ignored."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older: tensors only
        with safe(_numpy_safe_globals()) if safe else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about plain pickles before failing on them
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as torch_exc:  # noqa: BLE001 - fall back to the plain-pickle reader
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(
                f"{path}: refused by torch.load(weights_only=True): it contains {unsafe}, which are not tensors "
                f"or arrays. If you trust the file, re-save just its weights elsewhere, e.g. "
                f"torch.save({{'model': ckpt['model']}}, 'weights.pth'), and convert that.") from torch_exc
        try:
            with open(path, "rb") as f:
                obj = _ArraysOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
        except Exception as exc:  # noqa: BLE001
            first_line = re.sub(r"\x1b\[[0-9;]*m", "", str(torch_exc)).splitlines()[0][:160]
            raise CheckpointError(
                f"{path}: cannot be read safely: torch.load(weights_only=True) said {type(torch_exc).__name__}: "
                f"{first_line}; as a plain pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict with a 'model' entry, found a {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        state, ignored = obj["model"], sorted(str(k) for k in obj if k != "model")
    elif all(isinstance(v, (Tensor, np.ndarray)) for v in obj.values()):
        state, ignored = obj, []
    else:
        raise CheckpointError(f"{path}: no 'model' entry (found {sorted(map(str, obj))[:8]}); is it a Detectron2 "
                              f"checkpoint of PanopticDepth or PanopticFCN?")
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value, order="C", copy=True))  # keeps 0-d arrays 0-d
        elif isinstance(value, (np.generic, int, float)):
            value = torch.as_tensor(value)
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: model entry {key!r} is a {type(value).__name__}, not an array")
        tensors[str(key)] = value
    return tensors, ignored


# ------------------------------------------------------------------------------------------- conversion
@dataclass
class ConversionReport:
    """What the conversion did, for the printed summary."""

    mapped: list[tuple[str, str]] = field(default_factory=list)  # (released, ours)
    canonical_focal: float | None = None  # stored with the weights (depth models): the camera depth is for
    canonical_focal_source: str = ""  # where it came from
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> released keys
    filled: dict[str, list[str]] = field(default_factory=dict)  # reason -> our keys
    ignored_entries: list[str] = field(default_factory=list)  # top-level entries besides "model"

    def summary(self) -> str:
        lines = [f"  mapped:  {len(self.mapped)} tensors"]
        for reason, keys in self.skipped.items():
            lines.append(f"  skipped: {len(keys)} ({reason})")
        for reason, keys in self.filled.items():
            lines.append(f"  filled:  {len(keys)} ({reason})")
        if self.ignored_entries:
            lines.append(f"  ignored top-level entries: {', '.join(self.ignored_entries)}")
        if self.canonical_focal is not None:
            lines.append(f"  canonical focal: {self.canonical_focal:g} px ({self.canonical_focal_source})")
        return "\n".join(lines)


def convert_state_dict(released: Mapping[str, Tensor], target: Mapping[str, Tensor],
                       cfg: CfgNode | None = None) -> tuple[dict[str, Tensor], ConversionReport]:
    """Rename and check ``released`` against our model's ``target`` state dict; raise on any leftover."""
    report = ConversionReport()
    out: dict[str, Tensor] = {}
    unmapped, unexpected, mismatched, duplicates = [], [], [], []
    for key, value in released.items():
        reason = next((why for regex, why in _IGNORED_KEYS if regex.search(key)), None)
        if reason:
            _check_pixel_stats(key, value, cfg)
            report.skipped.setdefault(reason, []).append(key)
            continue
        ours = map_key(key)
        if ours is None:
            unmapped.append(key)
            continue
        if ours not in target:
            if ours.endswith(_NBT):
                report.skipped.setdefault("num_batches_tracked: the target norm (FrozenBN/GN) has none", []).append(key)
            else:
                unexpected.append(f"{key} -> {ours}")
            continue
        if ours in out:
            duplicates.append(key)
            continue
        want = target[ours]
        if tuple(value.shape) != tuple(want.shape):
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {ours} {tuple(want.shape)}")
            continue
        out[ours] = value.to(want.dtype).contiguous()
        report.mapped.append((key, ours))
    missing = []
    for ours, want in target.items():
        if ours in out:
            continue
        if ours.endswith(_NBT):
            out[ours] = torch.zeros_like(want)
            report.filled.setdefault("num_batches_tracked = 0: BN in the target, not in the checkpoint",
                                     []).append(ours)
        else:
            missing.append(ours)
    if unmapped or unexpected or mismatched or missing or duplicates:
        names = released_names(target)
        missing = [f"{k} (released name {names[k]})" for k in missing]
        raise CheckpointError(_mismatch_message(unmapped, unexpected, mismatched, missing, duplicates))
    return out, report


def _check_pixel_stats(key: str, value: Tensor, cfg: CfgNode | None) -> None:
    if cfg is None:
        return
    name = "PIXEL_MEAN" if key.endswith("pixel_mean") else "PIXEL_STD"
    want = torch.tensor(cfg.MODEL[name], dtype=torch.float32)
    if value.numel() != 3 or not torch.allclose(value.float().flatten(), want, atol=1e-3):
        raise CheckpointError(f"checkpoint {key} = {value.flatten().tolist()} differs from the config's "
                              f"MODEL.{name} = {want.tolist()}; use a config with the checkpoint's values")


def _mismatch_message(unmapped: list[str], unexpected: list[str], mismatched: list[str], missing: list[str],
                      duplicates: list[str]) -> str:
    parts = ["the checkpoint does not fit the model built from the config:"]
    for label, items in (("released keys no rule knows", unmapped),
                         ("released keys the model does not have", unexpected),
                         ("shape mismatches", mismatched),
                         ("model keys the checkpoint does not provide", missing),
                         ("released keys mapped twice", duplicates)):
        if items:
            more = f" ... and {len(items) - 6} more" if len(items) > 6 else ""
            parts.append(f"  {len(items)} {label}: {', '.join(items[:6])}{more}")
    if any("depth" in k for k in unexpected):
        parts.append("  The checkpoint has depth heads: use a config with MODEL.DEPTH_ON True.")
    if any("depth" in k for k in missing) and not any("depth" in k for k in unexpected):
        parts.append("  The checkpoint has no depth heads (panoptic-only / PanopticFCN): use MODEL.DEPTH_ON False.")
    if mismatched:
        parts.append("  Check MODEL.RESNETS.DEPTH, the head CONVS_DIM / NUM_CLASSES and DEPTH_HEAD.DEPTH_KERNEL_DIM.")
    return "\n".join(parts)


def has_depth_heads(released: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("depth_kernel_head.", "depth_encode_head.")) for k in released)


def default_config_path(depth: bool) -> Path:
    """The shipped config matching a released checkpoint: the Cityscapes-DPS one with depth, else panoptic."""
    rel = (Path("cityscapes_dps") / "PanopticDepth-R50-cityscapes-dps.yaml" if depth
           else Path("cityscapes") / "PanopticDepth-R50-cityscapes.yaml")
    roots = [Path(__file__).resolve().parents[2] / "config",
             Path(sys.prefix) / "share" / "panopticdepth_ros" / "config"]
    for root in roots:
        if (root / rel).is_file():
            return root / rel
    raise CheckpointError(f"cannot find the shipped config {rel} (looked in {', '.join(map(str, roots))}); "
                          f"pass --config")


def target_state_dict(cfg: CfgNode) -> dict[str, Tensor]:
    """Our model's state dict (shapes, dtypes) for ``cfg``, built on the CPU without pretrained weights."""
    from ..modeling.panoptic_depth import PanopticDepth

    return PanopticDepth(cfg, load_pretrained=False).state_dict()


def convert_checkpoint(in_path: str | Path, out_path: str | Path, config: str | Path | CfgNode | None = None,
                       overrides: tuple[str, ...] = ()) -> ConversionReport:
    """Read a released .pth, convert it for ``config`` (default: the shipped one that fits), write safetensors.

    Depth models get their canonical focal length stored (MODEL.CANONICAL_FOCAL in the saved config and the
    ``canonical_focal`` metadata): the config's if it sets one, else Cityscapes' camera (every released depth
    model was trained on Cityscapes-DPS at full resolution, where depth targets are for that camera).
    """
    released, ignored = read_released_checkpoint(in_path)
    if isinstance(config, CfgNode):
        cfg = config
    else:
        cfg = load_config(config or default_config_path(has_depth_heads(released)), overrides)
    converted, report = convert_state_dict(released, target_state_dict(cfg), cfg)
    report.ignored_entries = ignored
    if cfg.MODEL.DEPTH_ON:
        if cfg.MODEL.CANONICAL_FOCAL > 0:
            report.canonical_focal, report.canonical_focal_source = float(cfg.MODEL.CANONICAL_FOCAL), "the config's"
        else:
            cfg = cfg.clone().defrost()
            cfg.MODEL.CANONICAL_FOCAL = CITYSCAPES_FOCAL
            cfg.freeze()
            report.canonical_focal = CITYSCAPES_FOCAL
            report.canonical_focal_source = "Cityscapes' camera, the released models' training camera"
    save_checkpoint(converted, out_path, cfg, metadata={"converted_from": Path(in_path).name,
                                                         "source_format": "detectron2"})
    return report


def mapping_table(cfg: CfgNode) -> list[tuple[str, str]]:
    """(released key, our key) for every entry of the model ``cfg`` builds, by inverting :data:`RULES`."""
    return [(rel, ours) for ours, rel in released_names(target_state_dict(cfg)).items()]


def released_names(target: Mapping[str, Tensor]) -> dict[str, str]:
    """Our key -> its released name, for a whole state dict (the inverse of :func:`map_key`).

    Knowing the whole model resolves the one ambiguity: a deformable tower conv keeps its weight, bias and
    norm under ``dcnv2.`` in the released layout, a plain one directly under the conv's name.
    """
    deform = {k[: -len("conv.offset_mask.weight")] for k in target if k.endswith("conv.offset_mask.weight")}
    names = {}
    for ours in target:
        for pattern, build in _INVERSE:
            m = pattern.match(ours)
            if m:
                names[ours] = build(m, ours.split(".conv.")[0].split(".norm.")[0] + "." in deform)
                break
        else:
            raise KeyError(f"no released name for {ours!r}")
    return names


def _norm_part(is_norm: bool) -> str:
    """Released conv+norm modules keep conv parameters at their top and the norm's under ``norm.``; ours (and
    torchvision's ResNet) keep them in two sibling modules, so each pair of ours maps back with one rule."""
    return "norm." if is_norm else ""


def _inverse_rules() -> list[tuple[re.Pattern, Callable[[re.Match, bool], str]]]:
    res = "backbone.bottom_up.res"
    inv: list[tuple[str, Callable[[re.Match, bool], str]]] = [
        (r"backbone\.body\.(conv|bn)1\.(\w+)",
         lambda m, d: f"backbone.bottom_up.stem.conv1.{_norm_part(m.group(1) == 'bn')}{m.group(2)}"),
        (r"backbone\.body\.layer([1-4])\.(\d+)\.(conv|bn)([1-3])\.(\w+)",
         lambda m, d: f"{res}{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(4)}.{_norm_part(m.group(3) == 'bn')}"
                      f"{m.group(5)}"),
        (r"backbone\.body\.layer([1-4])\.(\d+)\.downsample\.([01])\.(\w+)",
         lambda m, d: f"{res}{int(m.group(1)) + 1}.{m.group(2)}.shortcut.{_norm_part(m.group(3) == '1')}{m.group(4)}"),
        (r"backbone\.fpn\.(lateral|output)\.([0-3])\.(conv|norm)\.(\w+)",
         lambda m, d: f"backbone.fpn_{m.group(1)}{int(m.group(2)) + 2}.{_norm_part(m.group(3) == 'norm')}{m.group(4)}"),
        (r"semantic_fpn\.heads\.(p[2-5])\.(\d+)\.(conv|norm)\.(\w+)",
         lambda m, d: f"semantic_fpn.{m.group(1)}.{m.group(2)}.{_norm_part(m.group(3) == 'norm')}{m.group(4)}"),
    ]
    for released, (ours, conv_name) in _TOWERS.items():
        head = f"{released}.{conv_name}"
        inv += [
            (rf"{ours}\.tower\.(\d+)\.conv\.offset_mask\.(\w+)",
             lambda m, d, h=head: f"{h}_{int(m.group(1)) + 1}.offset_mask_conv.{m.group(2)}"),
            (rf"{ours}\.tower\.(\d+)\.(conv|norm)\.(\w+)",
             lambda m, d, h=head: f"{h}_{int(m.group(1)) + 1}.{'dcnv2.' if d else ''}"
                                  f"{_norm_part(m.group(2) == 'norm')}{m.group(3)}"),
        ]
    inv += [(rf"{re.escape(dst)}\.(weight|bias)", lambda m, d, src=src: f"{src}.{m.group(1)}")
            for src, dst in _RENAMED.items()]
    return [(re.compile(p + r"\Z"), b) for p, b in inv]


_INVERSE = _inverse_rules()
