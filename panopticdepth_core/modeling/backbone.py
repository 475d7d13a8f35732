"""ResNet (torchvision's, without its classifier) + FPN giving P2..P7, with P6/P7 computed from P5.

The ResNet keeps torchvision's module names (``conv1``, ``bn1``, ``layer1``..``layer4``) so that a local
torchvision ImageNet state dict loads as is; released Detectron2 checkpoints are renamed by
``checkpoint/convert.py``. ``MODEL.RESNETS.STRIDE_IN_1X1`` moves the stride-2 of the first bottleneck of
res3..res5 into its 1x1 conv (the MSRA / Detectron2 layout the released checkpoints were trained with).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet

from ..config import CfgNode
from .layers import ConvNormAct, FrozenBatchNorm2d, c2_xavier_fill, get_norm

_RESNETS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
RES_FEATURES = ("res2", "res3", "res4", "res5")
FPN_FEATURES = ("p2", "p3", "p4", "p5", "p6", "p7")
FPN_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}


class PretrainedWeightsError(RuntimeError):
    """The local ImageNet weights file is missing or does not fit the ResNet."""


class ResNetBody(nn.Module):
    """ResNet stem + four stages, returning the outputs of res2..res5 (strides 4..32)."""

    def __init__(self, depth: int, norm: str, stride_in_1x1: bool) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_RESNETS)}, got {depth}")
        if norm == "":
            raise ValueError("MODEL.RESNETS.NORM must be BN, SyncBN, FrozenBN or GN for the ResNet, got ''")
        get_norm(norm, 64, key="MODEL.RESNETS.NORM")  # validates the name before torchvision calls it

        def norm_layer(channels: int) -> nn.Module:
            return get_norm(norm, channels, key="MODEL.RESNETS.NORM")

        net = _RESNETS[depth](weights=None, norm_layer=norm_layer)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.bottleneck = depth >= 50
        width = 4 if self.bottleneck else 1
        self.out_channels = [64 * width, 128 * width, 256 * width, 512 * width]
        if stride_in_1x1 and self.bottleneck:
            for stage in (self.layer2, self.layer3, self.layer4):
                first = stage[0]
                first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)

    def stages(self) -> list[nn.Module]:
        """The freezable units in order: stem, res2, res3, res4, res5."""
        return [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3, self.layer4]

    def freeze(self, freeze_at: int) -> None:
        """Freeze the stem (1) and res2..res{freeze_at} (>= 2): no gradients, batch norms frozen, as Detectron2."""
        if freeze_at >= 1:
            for p in list(self.conv1.parameters()) + list(self.bn1.parameters()):
                p.requires_grad_(False)
            self.bn1 = FrozenBatchNorm2d.convert(self.bn1)
        for index, stage in enumerate([self.layer1, self.layer2, self.layer3, self.layer4], start=2):
            if freeze_at >= index:
                for p in stage.parameters():
                    p.requires_grad_(False)
                FrozenBatchNorm2d.convert(stage)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class FPN(nn.Module):
    """Top-down feature pyramid over res2..res5 plus P6 (stride-2 conv on P5) and P7 (on ReLU(P6))."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, norm: str = "", fuse_type: str = "sum") -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"MODEL.FPN.FUSE_TYPE must be 'sum' or 'avg', got {fuse_type!r}")
        self.fuse_type = fuse_type
        self.lateral = nn.ModuleList(
            ConvNormAct(c, out_channels, 1, norm=norm, activation=False, norm_key="MODEL.FPN.NORM")
            for c in in_channels)
        self.output = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, norm=norm, activation=False, norm_key="MODEL.FPN.NORM")
            for _ in in_channels)
        self.p6 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for block in list(self.lateral) + list(self.output):
            c2_xavier_fill(block.conv)
        c2_xavier_fill(self.p6)
        c2_xavier_fill(self.p7)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """``[c2..c5]`` -> ``[p2..p7]``."""
        prev = self.lateral[-1](feats[-1])
        outs = [self.output[-1](prev)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            prev = lateral + F.interpolate(prev, size=lateral.shape[-2:], mode="nearest")
            if self.fuse_type == "avg":
                prev = prev / 2
            outs.insert(0, self.output[i](prev))
        p6 = self.p6(outs[-1])
        p7 = self.p7(F.relu(p6))
        return outs + [p6, p7]


class ResNetFPN(nn.Module):
    """The backbone: image batch (B, 3, H, W), H and W multiples of 128 -> {"p2": ..., "p7": ...}."""

    size_divisibility = 128
    out_features = FPN_FEATURES
    strides = FPN_STRIDES

    def __init__(self, depth: int = 50, norm: str = "FrozenBN", stride_in_1x1: bool = True, out_channels: int = 256,
                 fpn_norm: str = "", fuse_type: str = "sum", freeze_at: int = 2,
                 pretrained: str | Path = "") -> None:
        """``pretrained``: a local torchvision ImageNet ResNet state dict loaded into the body ("" = none);
        ``freeze_at``: the stem (1) and res2..res{freeze_at} get no gradients (see ``ResNetBody.freeze``)."""
        super().__init__()
        self.body = ResNetBody(depth, norm, stride_in_1x1)
        self.fpn = FPN(self.body.out_channels, out_channels, fpn_norm, fuse_type)
        self.out_channels = out_channels
        if pretrained:
            load_pretrained_resnet(self.body, pretrained)
        self.body.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg: CfgNode, load_pretrained: bool = True) -> ResNetFPN:
        """MODEL.RESNETS / MODEL.FPN / MODEL.BACKBONE; ``load_pretrained`` False skips MODEL.BACKBONE.PRETRAINED."""
        m = cfg.MODEL
        for key, value in (("MODEL.RESNETS.OUT_FEATURES", m.RESNETS.OUT_FEATURES),
                           ("MODEL.FPN.IN_FEATURES", m.FPN.IN_FEATURES)):
            if list(value) != list(RES_FEATURES):
                raise ValueError(f"{key} must be {list(RES_FEATURES)} (the only layout supported), got {list(value)}")
        return cls(m.RESNETS.DEPTH, m.RESNETS.NORM, m.RESNETS.STRIDE_IN_1X1, m.FPN.OUT_CHANNELS, m.FPN.NORM,
                   m.FPN.FUSE_TYPE, m.BACKBONE.FREEZE_AT, m.BACKBONE.PRETRAINED if load_pretrained else "")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(FPN_FEATURES, self.fpn(self.body(x))))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, found {type(obj).__name__}")
    return obj


def load_pretrained_resnet(body: ResNetBody, path: str | Path) -> None:
    """Load a torchvision-layout ImageNet ResNet state dict (``fc.*`` ignored) from a local file."""
    path = Path(path).expanduser()
    key = "MODEL.BACKBONE.PRETRAINED"
    if not path.is_file():
        raise PretrainedWeightsError(
            f"{key}: file not found: {path}. Nothing is downloaded; give the path of a local torchvision "
            f"ImageNet ResNet state dict (.pth or .safetensors), or set {key} to '' to start from scratch.")
    try:
        state = _read_state_dict(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise PretrainedWeightsError(f"{key}: cannot read {path} as weights: {exc}") from exc
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = body.state_dict()
    bad_shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    if bad_shapes or missing or unexpected:
        raise PretrainedWeightsError(
            f"{key}: {path} does not fit a ResNet-{_depth_of(body)} with "
            f"MODEL.RESNETS.NORM as configured: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(bad_shapes)} shape mismatches "
            f"(e.g. {bad_shapes[:3]}). Expected torchvision's key names (conv1.weight, layer1.0.conv1.weight, ...).")
    body.load_state_dict(state, strict=False)


def _depth_of(body: ResNetBody) -> int:
    blocks = (len(body.layer1), len(body.layer2), len(body.layer3), len(body.layer4))
    table = {(2, 2, 2, 2, False): 18, (3, 4, 6, 3, False): 34, (3, 4, 6, 3, True): 50, (3, 4, 23, 3, True): 101}
    return table.get((*blocks, body.bottleneck), -1)
