"""The PanopticDepth meta-architecture: images in; losses (training) or panoptic + depth results (inference) out.

Pipeline: RGB 0..255 images -> INPUT.FORMAT channel order -> (x - PIXEL_MEAN) / PIXEL_STD -> zero-padded batch
(right/bottom, to a multiple of 128) -> ResNet-FPN (P2..P7) -> per-level position / kernel / depth-kernel heads on
FEATURE_ENCODER.IN_FEATURES (weights shared across levels) and the stride-4 mask / depth encoders on the
semantic-FPN feature -> :class:`HeadOutputs`. Targets, losses and post-processing live in their own modules and
only see ``HeadOutputs``, the two kernel projections and their settings (``settings.py``), which the model builds
once from its config. This class is the one place that reads the config: every submodule takes plain, typed
constructor arguments and has a ``from_config`` classmethod that maps the config onto them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..config import CfgNode
from .backbone import ResNetFPN
from .heads import DepthFeatureEncoder, DepthKernelHead, FeatureEncoder, KernelHead, KernelProjection, PositionHead
from .semantic_fpn import SemanticFPN
from .settings import LossParams, PostprocessParams, TargetParams
from .types import HeadOutputs, InstanceTarget, PanopticResult

Size = tuple[int, int]


class PanopticDepth(nn.Module):
    """Depth-aware panoptic segmentation network (Gao et al., CVPR 2022) built from a config."""

    def __init__(self, cfg: CfgNode, load_pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.MODEL
        self.depth_on = bool(m.DEPTH_ON)
        self.in_features = list(m.FEATURE_ENCODER.IN_FEATURES)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format!r}")

        self.backbone = ResNetFPN.from_config(cfg, load_pretrained=load_pretrained)
        unknown = [f for f in self.in_features if f not in self.backbone.out_features]
        if unknown:
            raise ValueError(f"MODEL.FEATURE_ENCODER.IN_FEATURES has unknown features {unknown}; "
                             f"the backbone gives {list(self.backbone.out_features)}")
        self.size_divisibility = self.backbone.size_divisibility
        self.semantic_fpn = SemanticFPN.from_config(cfg)
        self.position_head = PositionHead.from_config(cfg)
        self.kernel_head = KernelHead.from_config(cfg)
        self.feature_encoder = FeatureEncoder.from_config(cfg)
        if self.depth_on:
            self.depth_kernel_head = DepthKernelHead.from_config(cfg)
            self.depth_encoder = DepthFeatureEncoder.from_config(cfg)
        self.thing_projection = KernelProjection(m.KERNEL_HEAD.CONVS_DIM, m.FEATURE_ENCODER.CONVS_DIM)
        self.stuff_projection = KernelProjection(m.KERNEL_HEAD.CONVS_DIM, m.FEATURE_ENCODER.CONVS_DIM)

        # What targets, losses and post-processing read, looked up (and validated) once; the config is frozen.
        self.target_params = TargetParams.from_config(cfg)
        self.loss_params = LossParams.from_config(cfg)
        self.postprocess_params = PostprocessParams.from_config(cfg)

        # Not in the state dict: the config is the single source of these values.
        self.register_buffer("pixel_mean", torch.tensor(m.PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(m.PIXEL_STD, dtype=torch.float32).view(3, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ---- kernel projections (the thing / stuff generators' 1x1 convs) --------------------------------------
    def project_thing(self, kernels: Tensor) -> Tensor:
        """Thing kernels (..., C_kernel) -> mask-embedding kernels (..., E)."""
        return self.thing_projection(kernels)

    def project_stuff(self, kernels: Tensor) -> Tensor:
        """Stuff kernels (..., C_kernel) -> mask-embedding kernels (..., E)."""
        return self.stuff_projection(kernels)

    # ---- input -----------------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[Tensor]) -> tuple[Tensor, list[Size], Size]:
        """RGB 0..255 images (3, H_i, W_i) -> normalised, zero-padded batch (B, 3, Hp, Wp), sizes, (Hp, Wp)."""
        return normalize_and_pad(images, self.pixel_mean, self.pixel_std, self.input_format,
                                 self.size_divisibility, self.device)

    # ---- network ---------------------------------------------------------------------------------------------
    def forward_features(self, batch: Tensor) -> HeadOutputs:
        """Padded, normalised batch (B, 3, Hp, Wp) -> every head's raw output."""
        features = self.backbone(batch)
        fused = self.semantic_fpn(features)  # (B, C_sem, Hp/4, Wp/4)
        centers, regions, kernels, depth_kernels = [], [], [], []
        for name in self.in_features:
            feat = features[name]
            center, region = self.position_head(feat)
            centers.append(center)
            regions.append(region)
            kernels.append(self.kernel_head(feat))
            if self.depth_on:
                depth_kernels.append(self.depth_kernel_head(feat))
        return HeadOutputs(
            center_logits=centers,
            region_logits=regions,
            kernel_features=kernels,
            mask_embedding=self.feature_encoder(fused),
            depth_kernel_params=depth_kernels if self.depth_on else None,
            depth_embedding=self.depth_encoder(fused) if self.depth_on else None,
        )

    def predict_heads(self, images: Sequence[Tensor]) -> tuple[HeadOutputs, list[Size], Size]:
        """Network only (no targets, no post-processing): (HeadOutputs, image sizes, padded size)."""
        batch, sizes, padded = self.preprocess(images)
        return self.forward_features(batch), sizes, padded

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[InstanceTarget] | None = None,
        output_sizes: Sequence[Size] | None = None,
    ) -> dict[str, Tensor] | list[PanopticResult]:
        """Training (``self.training`` and targets): weighted losses. Otherwise: one result per image.

        ``output_sizes`` (one (H, W) per image) is the resolution results are returned at, e.g. the camera's
        when the input was resized; by default each input's own size.
        """
        head, sizes, padded = self.predict_heads(images)
        if self.training:
            if targets is None:
                raise ValueError("PanopticDepth in training mode needs targets; call model.eval() for inference")
            if len(targets) != len(sizes):
                raise ValueError(f"got {len(sizes)} images but {len(targets)} targets")
            return self.losses(head, targets, padded)
        if output_sizes is not None and len(output_sizes) != len(sizes):
            raise ValueError(f"got {len(sizes)} images but {len(output_sizes)} output sizes")
        return self.postprocess(head, sizes, list(output_sizes) if output_sizes is not None else sizes)

    def losses(self, head: HeadOutputs, targets: Sequence[InstanceTarget], padded_size: Size) -> dict[str, Tensor]:
        """Weighted losses of ``head`` against ground truth (builds the per-level targets first)."""
        from .losses import compute_losses
        from .targets import build_targets

        targets = [_target_to(t, self.device) for t in targets]
        level_sizes = [tuple(c.shape[-2:]) for c in head.center_logits]
        embed_size = tuple(head.mask_embedding.shape[-2:])
        target_set = build_targets(targets, padded_size, level_sizes, embed_size, self.target_params)
        return compute_losses(head, target_set, self.project_thing, self.project_stuff, self.loss_params)

    @torch.no_grad()
    def postprocess(self, head: HeadOutputs, image_sizes: list[Size], output_sizes: list[Size]) -> list[PanopticResult]:
        """Panoptic labels and depth per image from the raw head outputs."""
        from .postprocess import postprocess

        return postprocess(
            head, self.project_thing, self.project_stuff, image_sizes, output_sizes, self.postprocess_params
        )


def normalize_and_pad(images: Sequence[Tensor], pixel_mean: Tensor, pixel_std: Tensor, input_format: str,
                      size_divisibility: int, device: torch.device, pad_to: Size | None = None,
                      ) -> tuple[Tensor, list[Size], Size]:
    """RGB 0..255 images (3, H_i, W_i) -> normalised batch (B, 3, Hp, Wp) zero-padded right/bottom to a multiple of
    ``size_divisibility`` (or to ``pad_to``, a fixed network input), each image's (H, W), and (Hp, Wp).

    Shared by the torch model and the ONNX Runtime backend, so both see the same input. pixel_mean / pixel_std
    (3, 1, 1) are in the ``input_format`` channel order (RGB or BGR).
    """
    if isinstance(images, Tensor):
        images = list(images) if images.dim() == 4 else [images]
    if len(images) == 0:
        raise ValueError("PanopticDepth needs at least one image")
    sizes: list[Size] = []
    for i, img in enumerate(images):
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"image {i} must be a (3, H, W) RGB tensor, got shape {tuple(img.shape)}")
        sizes.append((int(img.shape[1]), int(img.shape[2])))
    div = size_divisibility
    pad_h = -(-max(h for h, _ in sizes) // div) * div
    pad_w = -(-max(w for _, w in sizes) // div) * div
    if pad_to is not None:
        if pad_h > pad_to[0] or pad_w > pad_to[1]:
            raise ValueError(f"an image of {max(h for h, _ in sizes)}x{max(w for _, w in sizes)} does not fit the "
                             f"network's fixed input of {pad_to[0]}x{pad_to[1]}")
        pad_h, pad_w = pad_to
    mean, std = pixel_mean.to(device), pixel_std.to(device)
    batch = torch.zeros((len(images), 3, pad_h, pad_w), dtype=torch.float32, device=device)
    for i, img in enumerate(images):
        x = img.to(device=device, dtype=torch.float32, non_blocking=True)
        if input_format == "BGR":
            x = x.flip(0)
        h, w = sizes[i]
        batch[i, :, :h, :w] = (x - mean) / std
    return batch, sizes, (pad_h, pad_w)


def _target_to(target: InstanceTarget, device: torch.device) -> InstanceTarget:
    return InstanceTarget(
        semantic=target.semantic.to(device, non_blocking=True),
        instance=target.instance.to(device, non_blocking=True),
        depth=target.depth.to(device, non_blocking=True) if target.depth is not None else None,
    )

