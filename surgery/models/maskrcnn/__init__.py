"""Mask R-CNN (Matterport's inference architecture) in tf-keras, NCHW or NHWC, for fixtures.

Modules: `config` (options, presets), `anchors`, `naming` (inner names of the renamed variant),
`norm` (frozen batch norm), `backbone` (ResNet + FPN), `rpn`, `boxes`, `proposal` (`ROI`),
`roi_align` (`roi_align_classifier`/`roi_align_mask`), `heads`, `detection`
(`mrcnn_detection`), `model` (wiring) and `fixture` (randomise + freeze). Importing this package
does not import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from surgery.models.maskrcnn.config import FULL, SMALL, MaskRCNNConfig, make_config


def build(config: str | MaskRCNNConfig = "small", **changes: Any) -> Any:
    """A randomised tf-keras Mask R-CNN; see `fixture.build`."""
    from surgery.models.maskrcnn import fixture

    return fixture.build(config, **changes)


def freeze_model(where: str, config: str | MaskRCNNConfig = "small", **changes: Any) -> Any:
    """The frozen Mask R-CNN (a `surgery.passes.freeze.FrozenModel`); see `fixture.freeze_model`."""
    from surgery.models.maskrcnn import fixture

    return fixture.freeze_model(where, config, **changes)


__all__ = ["FULL", "SMALL", "MaskRCNNConfig", "build", "freeze_model", "make_config"]
