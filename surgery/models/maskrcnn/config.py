"""Mask R-CNN build options: the small test config, the full COCO-size config, and variants."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from surgery.errors import SurgeryError

DATA_FORMATS = ("channels_first", "channels_last")
CONTROL_FLOWS = ("v2", "v1")
NAMINGS = ("matterport", "renamed")
ANCHOR_MODES = ("constant", "input")


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Every knob of the inference graph; defaults are the full ResNet101 / COCO model."""

    backbone: str = "resnet101"
    width: float = 1.0  # multiplies every backbone channel count
    image_size: int = 1024  # square input, a multiple of 64
    num_classes: int = 81  # background included
    top_down_size: int = 256  # FPN channels
    rpn_conv_size: int = 512  # channels of rpn_conv_shared
    anchor_scales: tuple[int, ...] = (32, 64, 128, 256, 512)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_stride: int = 1
    backbone_strides: tuple[int, ...] = (4, 8, 16, 32, 64)
    rpn_bbox_std: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)
    bbox_std: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)
    pre_nms_limit: int = 1024  # ProposalLayer_TRT's prenms_topk
    proposals: int = 1000  # post-NMS ROIs (keep_topk)
    rpn_nms_threshold: float = 0.7
    pool_size: int = 7
    mask_pool_size: int = 14
    fc_size: int = 1024  # classifier head width (mrcnn_class_conv1/2)
    mask_conv_size: int = 256
    detections: int = 100  # DETECTION_MAX_INSTANCES
    detection_min_confidence: float = 0.7
    detection_nms_threshold: float = 0.3
    bn_epsilon: float = 1e-3
    data_format: str = "channels_first"
    control_flow: str = "v2"  # "v1": Enter/Exit/Merge/Switch in mrcnn_detection
    naming: str = "matterport"  # "renamed": other inner op names, same scopes
    anchors: str = "constant"  # in-graph `anchors` constant, or an `input_anchors` placeholder
    seed: int = 7

    def __post_init__(self) -> None:
        """Refuse values the graph cannot be built with."""
        checks = (
            (self.data_format, DATA_FORMATS, "data_format"),
            (self.control_flow, CONTROL_FLOWS, "control_flow"),
            (self.naming, NAMINGS, "naming"),
            (self.anchors, ANCHOR_MODES, "anchors"),
            (self.backbone, ("resnet50", "resnet101"), "backbone"),
        )
        for value, allowed, what in checks:
            if value not in allowed:
                raise SurgeryError(
                    f"Mask R-CNN config: {what}={value!r} (expected one of {allowed})"
                )
        if self.image_size % 64:
            raise SurgeryError(
                f"Mask R-CNN config: image_size {self.image_size} is not a multiple of 64"
            )
        if self.pre_nms_limit > self.num_anchors:
            raise SurgeryError(
                f"Mask R-CNN config: pre_nms_limit {self.pre_nms_limit} > "
                f"{self.num_anchors} anchors"
            )

    @property
    def nchw(self) -> bool:
        """True for the TensorRT-friendly channels-first build."""
        return self.data_format == "channels_first"

    @property
    def channel_axis(self) -> int:
        """Axis of the channels in a 4-D feature map."""
        return 1 if self.nchw else 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The input image without the batch dimension, in the build's layout."""
        size = self.image_size
        return (3, size, size) if self.nchw else (size, size, 3)

    @property
    def mask_size(self) -> int:
        """Side of the predicted masks (twice the mask pool)."""
        return 2 * self.mask_pool_size

    @property
    def anchors_per_location(self) -> int:
        """Anchors at each feature-map cell."""
        return len(self.anchor_ratios)

    @property
    def num_anchors(self) -> int:
        """Anchors over all pyramid levels."""
        per_level = [
            math.ceil(self.image_size / stride / self.anchor_stride) ** 2
            for stride in self.backbone_strides
        ]
        return sum(per_level) * self.anchors_per_location

    def scaled(self, channels: int) -> int:
        """A backbone channel count after the width multiplier (at least 4)."""
        return max(4, int(round(channels * self.width)))

    def with_(self, **changes: Any) -> MaskRCNNConfig:
        """A copy with `changes` applied."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON values."""
        return asdict(self)


FULL = MaskRCNNConfig()

SMALL = MaskRCNNConfig(
    backbone="resnet50",
    width=0.125,
    image_size=128,
    num_classes=4,
    top_down_size=32,
    rpn_conv_size=64,
    # TensorRT's ProposalLayer_TRT generates its own anchors with scales 32..512 and has no field
    # to change them, so the small config keeps the full one's scales (image size aside).
    anchor_scales=(32, 64, 128, 256, 512),
    pre_nms_limit=256,
    proposals=64,
    fc_size=64,
    mask_conv_size=32,
    detections=16,
    detection_min_confidence=0.3,
)

PRESETS = {"small": SMALL, "full": FULL}


def make_config(config: str | MaskRCNNConfig = "small", **changes: Any) -> MaskRCNNConfig:
    """A preset (`"small"`, `"full"`) or a given config, with `changes` applied."""
    if isinstance(config, MaskRCNNConfig):
        base = config
    elif config in PRESETS:
        base = PRESETS[config]
    else:
        raise SurgeryError(f"unknown Mask R-CNN config {config!r} (known: {', '.join(PRESETS)})")
    for key in changes:
        if key not in base.__dataclass_fields__:
            raise SurgeryError(f"Mask R-CNN config has no option {key!r}")
    return replace(base, **changes)
