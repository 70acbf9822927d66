"""Matterport's own Mask R-CNN (PyPI `mrcnn-colab`, MIT), built in inference mode, randomised and
frozen: the architecture exactly as published, not our re-implementation of it (`maskrcnn/`).

Modules: `shims` (importing mrcnn against tf-keras and TF 2: a `keras` proxy present only while
mrcnn imports, TF1 names set where absent, `scipy`/`skimage` stand-ins where not installed),
`config` (the fixture configs as Matterport `Config`s, and Matterport's own inference feeds) and
`fixture` (weights and freezing).

Weights: every variable seeded random (`weights.randomise`), batch norm calibrated on the
fixture's own feeds (`matterport_inputs`), `rpn_bbox_pred` scaled to unit deltas and
`mrcnn_class_logits` standardised on those feeds so that foreground classes win some ROIs with
confidence: on its feeds the frozen graph gives real detections (about 15 % of the ROIs go to a
foreground class; after NMS the small config keeps 9 of its 16 rows). Every fixture of one config
carries the same weights, whatever its control flow. Importing this package does not import
TensorFlow.
"""

from __future__ import annotations

from surgery.models.matterport.config import CONFIGS, matterport_config, matterport_inputs
from surgery.models.matterport.fixture import build, build_maskrcnn, freeze_model
from surgery.models.matterport.shims import import_mrcnn

__all__ = [
    "CONFIGS",
    "build",
    "build_maskrcnn",
    "freeze_model",
    "import_mrcnn",
    "matterport_config",
    "matterport_inputs",
]
