"""Every configuration key the project knows, with its default.

Key names follow the released PanopticDepth / PanopticFCN (Detectron2) configs, so their YAML files and
command lines (``MODEL.WEIGHTS X OUTPUT_DIR Y``) carry over unchanged. Keys we added are marked ``# ours``.
"""

from __future__ import annotations

from .node import CfgNode

_C = CfgNode()
_C.VERSION = 2
_C.OUTPUT_DIR = "./output"
_C.SEED = -1
_C.CUDNN_BENCHMARK = False

# ------------------------------------------------------------------------------------------------ MODEL
_C.MODEL = CfgNode()
_C.MODEL.META_ARCHITECTURE = "PanopticDepth"
_C.MODEL.DEVICE = "cpu"
_C.MODEL.WEIGHTS = ""
_C.MODEL.MASK_ON = True
_C.MODEL.DEPTH_ON = False
# Mean and std in the channel order of INPUT.FORMAT, on 0..255 pixel values (the released configs' values).
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]
_C.MODEL.TENSOR_DIM = 150  # max things (and stuff) per image and level in the target tensors
_C.MODEL.IGNORE_VALUE = 255
# ours: the model's canonical camera, the focal length fx (pixels, at the network's input resolution) its depth is
# expressed for. A network that reads metric depth from one image learns it for one focal length: training
# converts every frame's depth targets to this camera (depth * CANONICAL_FOCAL / fx after the training resizes)
# and inference scales back (depth * fx_effective / CANONICAL_FOCAL, fx_effective = the image's fx after the
# resize to the network input). Stored in the weights file's metadata too. 0 = not recorded (models from before
# it existed): training assumes every frame's native camera is the canonical one and inference multiplies the
# depth by the test-time resize factor, as the released code does.
_C.MODEL.CANONICAL_FOCAL = 0.0

_C.MODEL.BACKBONE = CfgNode()
_C.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
_C.MODEL.BACKBONE.FREEZE_AT = 2  # 0: train all; 1: freeze the stem; k: freeze the stem and res2..res{k}
_C.MODEL.BACKBONE.PRETRAINED = ""  # ours: local torchvision ImageNet state dict (.pth or .safetensors)

_C.MODEL.RESNETS = CfgNode()
_C.MODEL.RESNETS.DEPTH = 50  # 18, 34, 50 or 101
_C.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.RESNETS.NORM = "FrozenBN"  # BN, SyncBN, FrozenBN or GN
# Detectron2's MSRA weights put the stride-2 in the 1x1 conv; torchvision's in the 3x3. Released
# checkpoints need True to reproduce their outputs; torchvision ImageNet weights want False.
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True

_C.MODEL.FPN = CfgNode()
_C.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.FPN.OUT_CHANNELS = 256
_C.MODEL.FPN.NORM = ""
_C.MODEL.FPN.FUSE_TYPE = "sum"

_C.MODEL.SEM_SEG_HEAD = CfgNode()  # accepted for compatibility with the released configs; unused
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 19

_C.MODEL.SEMANTIC_FPN = CfgNode()
_C.MODEL.SEMANTIC_FPN.IN_FEATURES = ["p2", "p3", "p4", "p5"]
_C.MODEL.SEMANTIC_FPN.CONVS_DIM = 256
_C.MODEL.SEMANTIC_FPN.COMMON_STRIDE = 4
_C.MODEL.SEMANTIC_FPN.NORM = "GN"

_C.MODEL.POSITION_HEAD = CfgNode()
_C.MODEL.POSITION_HEAD.NUM_CONVS = 3
_C.MODEL.POSITION_HEAD.COORD = False
_C.MODEL.POSITION_HEAD.CONVS_DIM = 256
_C.MODEL.POSITION_HEAD.NORM = "GN"
_C.MODEL.POSITION_HEAD.DEFORM = True
_C.MODEL.POSITION_HEAD.THING = CfgNode()
_C.MODEL.POSITION_HEAD.THING.CENTER_TYPE = "mass"
_C.MODEL.POSITION_HEAD.THING.POS_NUM = 7
_C.MODEL.POSITION_HEAD.THING.NUM_CLASSES = 8
_C.MODEL.POSITION_HEAD.THING.BIAS_VALUE = -2.19
_C.MODEL.POSITION_HEAD.THING.MIN_OVERLAP = 0.7
_C.MODEL.POSITION_HEAD.THING.GAUSSIAN_SIGMA = 3
_C.MODEL.POSITION_HEAD.THING.THRES = 0.05
_C.MODEL.POSITION_HEAD.THING.TOP_NUM = 100
_C.MODEL.POSITION_HEAD.STUFF = CfgNode()
_C.MODEL.POSITION_HEAD.STUFF.NUM_CLASSES = 19
_C.MODEL.POSITION_HEAD.STUFF.WITH_THING = True
_C.MODEL.POSITION_HEAD.STUFF.ALL_CLASSES = True
_C.MODEL.POSITION_HEAD.STUFF.THRES = 0.05

_C.MODEL.KERNEL_HEAD = CfgNode()
_C.MODEL.KERNEL_HEAD.INSTANCE_SCALES = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
_C.MODEL.KERNEL_HEAD.TEST_SCALES = ((1, 64), (64, 128), (128, 256), (256, 512), (512, 2048))
_C.MODEL.KERNEL_HEAD.NUM_CONVS = 3
_C.MODEL.KERNEL_HEAD.DEFORM = False
_C.MODEL.KERNEL_HEAD.COORD = True
_C.MODEL.KERNEL_HEAD.CONVS_DIM = 256
_C.MODEL.KERNEL_HEAD.NORM = "GN"

_C.MODEL.FEATURE_ENCODER = CfgNode()
_C.MODEL.FEATURE_ENCODER.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
_C.MODEL.FEATURE_ENCODER.NUM_CONVS = 3
_C.MODEL.FEATURE_ENCODER.CONVS_DIM = 256
_C.MODEL.FEATURE_ENCODER.DEFORM = True
_C.MODEL.FEATURE_ENCODER.COORD = True
_C.MODEL.FEATURE_ENCODER.NORM = ""

_C.MODEL.DEPTH_HEAD = CfgNode()
_C.MODEL.DEPTH_HEAD.NUM_CONVS = 3
_C.MODEL.DEPTH_HEAD.CONVS_DIM = 256
_C.MODEL.DEPTH_HEAD.DEFORM = True
_C.MODEL.DEPTH_HEAD.COORD = True
_C.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM = 16
_C.MODEL.DEPTH_HEAD.NORM = "GN"
_C.MODEL.DEPTH_HEAD.FACTOR = 5.0  # weight of the pixel depth loss
_C.MODEL.DEPTH_HEAD.FACTOR_INS = 1.0  # instance-level depth loss weight = FACTOR * FACTOR_INS
_C.MODEL.DEPTH_HEAD.MEAN_SCALE = 44.0  # ours: mu = MEAN_SCALE * sigmoid(a)
_C.MODEL.DEPTH_HEAD.RANGE_SCALE = 88.0  # ours: r = RANGE_SCALE * sigmoid(b)
_C.MODEL.DEPTH_HEAD.MAX_DEPTH = 80.0  # ours: inference clamps depth to [0, MAX_DEPTH] metres

_C.MODEL.LOSS_WEIGHT = CfgNode()
_C.MODEL.LOSS_WEIGHT.POSITION_THING = 1.0
_C.MODEL.LOSS_WEIGHT.POSITION_STUFF = 1.0
_C.MODEL.LOSS_WEIGHT.SEGMENT = 4.0
_C.MODEL.LOSS_WEIGHT.FOCAL_LOSS_ALPHA = 0.25
_C.MODEL.LOSS_WEIGHT.FOCAL_LOSS_GAMMA = 2.0

_C.MODEL.INFERENCE = CfgNode()
_C.MODEL.INFERENCE.INST_THRES = 0.4
_C.MODEL.INFERENCE.SIMILAR_THRES = 0.97
_C.MODEL.INFERENCE.SIMILAR_TYPE = "cosine"
_C.MODEL.INFERENCE.CLASS_SPECIFIC = True
_C.MODEL.INFERENCE.CENTER_POOL_SIZES = [3, 3, 3, 5, 5]  # ours: the released code hard-codes these
_C.MODEL.INFERENCE.COMBINE = CfgNode()
_C.MODEL.INFERENCE.COMBINE.ENABLE = True
_C.MODEL.INFERENCE.COMBINE.OVERLAP_THRESH = 0.5
_C.MODEL.INFERENCE.COMBINE.STUFF_AREA_LIMIT = 4096
_C.MODEL.INFERENCE.COMBINE.INST_THRESH = 0.2
# ours: "auto" = the depth-aware argmax rule when DEPTH_ON, the classic paste with void otherwise;
# "argmax" or "paste" force one.
_C.MODEL.INFERENCE.COMBINE.MODE = "auto"

# ------------------------------------------------------------------------------------------------ DATA
_C.DATASETS = CfgNode()
_C.DATASETS.NAME = "CityscapesDPS"
_C.DATASETS.TRAIN = ("cityscapes_dps_train",)
_C.DATASETS.TEST = ("cityscapes_dps_val",)
_C.DATASETS.ROOT = "datasets"  # ours: where named data sets live (env PANOPTICDEPTH_DATASETS wins)
_C.DATASETS.SYNTHETIC = CfgNode()  # ours: scenes generated on the fly for "synthetic_*" data sets
_C.DATASETS.SYNTHETIC.NUM_TRAIN = 2000
_C.DATASETS.SYNTHETIC.NUM_VAL = 100
_C.DATASETS.SYNTHETIC.SIZE = (256, 512)
_C.DATASETS.SYNTHETIC.SEED = 0
_C.DATASETS.SYNTHETIC.VAL_SEED = 1_000_000
# Fixed focal length fx = fy in pixels; 0 draws the horizontal field of view per scene from HFOV_RANGE. Training
# converts depth targets to MODEL.CANONICAL_FOCAL, so a random field of view teaches depth for any camera.
_C.DATASETS.SYNTHETIC.FOCAL = 0.0
_C.DATASETS.SYNTHETIC.HFOV_RANGE = (60.0, 90.0)  # ours: degrees, (min, max) of the drawn horizontal FOV
# Focal length of the synthetic_val scenes; -1 = FOCAL (so a random-FOV training set can be scored on one camera).
_C.DATASETS.SYNTHETIC.VAL_FOCAL = -1.0
# What the scenes may contain (data/synthetic_profiles.py): "streets" (all 18 classes the generator draws) or
# "basic" (road, sidewalk, building, vegetation, sky and cars up to 30 m; the CPU learning test).
_C.DATASETS.SYNTHETIC.PROFILE = "streets"

_C.DATALOADER = CfgNode()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
_C.DATALOADER.PIN_MEMORY = True  # ours

_C.INPUT = CfgNode()
_C.INPUT.FORMAT = "BGR"  # channel order the network sees (the released models were trained on BGR)
_C.INPUT.MIN_SIZE_TRAIN = (1024,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 4096
_C.INPUT.MIN_SIZE_TEST = 1024
_C.INPUT.MAX_SIZE_TEST = 2048
_C.INPUT.MASK_FORMAT = "bitmask"
_C.INPUT.COLOR_AUG = True
_C.INPUT.ROTATE_AUG = 0.0
_C.INPUT.DEPTH_BOUND = True
_C.INPUT.FLIP = True  # ours
_C.INPUT.CROP = CfgNode()
_C.INPUT.CROP.ENABLED = False
_C.INPUT.CROP.TYPE = "absolute"
_C.INPUT.CROP.SIZE = (512, 1024)
_C.INPUT.CROP.RESCALE = (-1.0, -1.0)
_C.INPUT.CROP.WITH_PAD = True
_C.INPUT.CROP.INSTANCE_AWARE = False  # ours: avoid crops that cut things in half

# ------------------------------------------------------------------------------------------------ SOLVER
_C.SOLVER = CfgNode()
_C.SOLVER.OPTIMIZER = "ADAM"
_C.SOLVER.BASE_LR = 0.0001
_C.SOLVER.BETAS = (0.9, 0.999)  # ours
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0001
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
_C.SOLVER.WARMUP_ITERS = 2000
_C.SOLVER.WARMUP_FACTOR = 0.001
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CLIP_GRADIENTS = CfgNode()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = True
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 35.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.IMS_PER_BATCH = 8
_C.SOLVER.MAX_ITER = 10000
_C.SOLVER.CHECKPOINT_PERIOD = 5000
_C.SOLVER.MAX_TO_KEEP = 3  # ours: periodic checkpoints kept
_C.SOLVER.AMP = CfgNode()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.PRECISION = "bf16"  # ours: bf16 or fp16 (fp16 uses a grad scaler)
_C.SOLVER.MAX_NONFINITE = 20  # ours: consecutive non-finite losses before the run stops

_C.TEST = CfgNode()
_C.TEST.EVAL_PERIOD = 0
_C.TEST.VIS_PERIOD = 0  # ours: TensorBoard prediction images every N iterations (0: at eval only)
_C.TEST.LOG_PERIOD = 20  # ours

# ours: instance ids that persist across video frames (panopticdepth_core/tracking, docs/tracking.md). Used by the
# node, `panopticdepth bag` and `panopticdepth predict` on sequences; each of them can turn tracking off.
_C.TRACKER = CfgNode()
_C.TRACKER.MAX_MISSING = 5  # frames a thing may stay unseen (occluded) and come back with its id
_C.TRACKER.IOU_WEIGHT = 1.0  # cost weights of the cues: mask IoU after the motion prediction, ...
_C.TRACKER.EMBEDDING_WEIGHT = 0.5  # ... cosine distance of the mask kernels, ...
_C.TRACKER.POSITION_WEIGHT = 1.0  # ... distance of the 3D (else 2D) position from the predicted one
_C.TRACKER.MAX_COST = 0.7  # pairs dearer than this (cost in [0, 1]) are never matched
_C.TRACKER.MIN_IOU = 0.05  # gate: a pair needs this IoU, or a position within the gate
_C.TRACKER.POSITION_GATE_M = 2.0  # 3D gate in metres, plus POSITION_GATE_REL x the thing's distance
_C.TRACKER.POSITION_GATE_REL = 0.1
_C.TRACKER.PIXEL_GATE = 0.1  # 2D gate (no depth) as a fraction of the image diagonal
_C.TRACKER.MISSING_PENALTY = 0.02  # extra cost per frame a track was unseen
_C.TRACKER.EMBEDDING_MOMENTUM = 0.7  # weight of a track's old embedding in its running mean
_C.TRACKER.OCCLUDED_RATIO = 0.6  # a mask below this share of its track's area is partly hidden: the track coasts
_C.TRACKER.IOU_FULL_AREA = 64  # grid cells: smaller masks weigh their IoU less (sqrt(area / this))
_C.TRACKER.GRID_SIZE = 160  # masks compared on a grid with at most this many cells along the longer side
_C.TRACKER.ID_LIMIT = 999  # ids per class (< 1000: panoptic id = class * 1000 + instance); then oldest retired


def get_default_config() -> CfgNode:
    """A fresh, unfrozen copy of the defaults."""
    return _C.clone()
