"""The fixture configs as Matterport `Config`s, and Matterport's own inference feeds for them."""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from surgery.models.matterport.shims import import_mrcnn

# Matterport `Config` values per fixture config; anchors, strides and the box std-devs stay at
# Matterport's defaults (TensorRT's plugins hard-code them).
CONFIGS: dict[str, dict[str, Any]] = {
    "small": {
        "BACKBONE": "resnet50",
        "IMAGE_MIN_DIM": 128,
        "IMAGE_MAX_DIM": 128,
        "NUM_CLASSES": 4,
        "PRE_NMS_LIMIT": 256,
        "POST_NMS_ROIS_INFERENCE": 64,
        "RPN_NMS_THRESHOLD": 0.7,
        "DETECTION_MAX_INSTANCES": 16,
        "DETECTION_MIN_CONFIDENCE": 0.3,
        "DETECTION_NMS_THRESHOLD": 0.3,
        "TOP_DOWN_PYRAMID_SIZE": 32,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
        "POOL_SIZE": 7,
        "MASK_POOL_SIZE": 14,
    },
    "medium": {
        "BACKBONE": "resnet101",
        "IMAGE_MIN_DIM": 192,
        "IMAGE_MAX_DIM": 192,
        "NUM_CLASSES": 7,
        "PRE_NMS_LIMIT": 1500,  # above TensorRT's 1024 top-k limit on purpose
        "POST_NMS_ROIS_INFERENCE": 100,
        "RPN_NMS_THRESHOLD": 0.6,
        "DETECTION_MAX_INSTANCES": 20,
        "DETECTION_MIN_CONFIDENCE": 0.5,
        "DETECTION_NMS_THRESHOLD": 0.4,
        "TOP_DOWN_PYRAMID_SIZE": 64,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 128,
        "POOL_SIZE": 5,
        "MASK_POOL_SIZE": 10,
    },
    # Matterport's COCO config (samples/coco: 1 + 80 classes), everything else default.
    "coco": {"NUM_CLASSES": 81},
}


def matterport_config(name: str) -> Any:
    """The Matterport `Config` of fixture config `name` (small, medium, coco), one image."""
    if name not in CONFIGS:
        raise ValueError(f"unknown Matterport config {name!r} (known: {', '.join(CONFIGS)})")
    _, config_class = import_mrcnn()
    values = {"NAME": f"matterport_{name}", "IMAGES_PER_GPU": 1, "GPU_COUNT": 1}
    values.update(CONFIGS[name])
    return type(f"Matterport{name.title()}Config", (config_class,), values)()


def _config(name_or_config: Any) -> Any:
    """A Matterport Config from a config name or a Config."""
    return matterport_config(name_or_config) if isinstance(name_or_config, str) else name_or_config


def matterport_inputs(name_or_config: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Matterport's inference feeds for one seeded image: the molded image (minus MEAN_PIXEL),
    `compose_image_meta` of it unresized and unpadded, and `MaskRCNN.get_anchors` of its shape.

    The image is a noisy background with a few solid rectangles, so that ROIs see different
    features. Keys are the placeholder names.
    """
    modellib, _ = import_mrcnn()
    config = _config(name_or_config)
    height, width, channels = (int(d) for d in config.IMAGE_SHAPE)
    shape = (height, width, channels)
    rng = np.random.default_rng([seed, 0x3A77E])
    image = rng.integers(0, 256, 3)[None, None, :] + rng.normal(0.0, 20.0, shape)
    for _ in range(6):
        y1, x1 = rng.integers(0, height - 16), rng.integers(0, width - 16)
        y2, x2 = y1 + rng.integers(12, height // 2), x1 + rng.integers(12, width // 2)
        image[y1:y2, x1:x2] = rng.integers(0, 256, 3) + rng.normal(0.0, 8.0, (1, 1, 3))
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    meta = modellib.compose_image_meta(
        0, shape, shape, (0, 0, height, width), 1.0, np.zeros([config.NUM_CLASSES])
    )
    # get_anchors reads only `config` and caches on the object: no Keras model needed for it.
    holder = types.SimpleNamespace(config=config)
    anchors = modellib.MaskRCNN.get_anchors(holder, shape)
    return {
        "input_image": modellib.mold_image(image, config)[None].astype(np.float32),
        "input_image_meta": meta[None].astype(np.float32),
        "input_anchors": np.broadcast_to(anchors, (1, *anchors.shape)).astype(np.float32),
    }
