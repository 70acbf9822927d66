"""Inner op names and sub-scopes: Matterport's, or a renamed set that keeps the layer scopes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from surgery.models.maskrcnn.config import MaskRCNNConfig


def op_name(config: MaskRCNNConfig, name: str) -> str:
    """The `name=` given to an op inside a layer: as is, or altered in the renamed variant."""
    return name if config.naming == "matterport" else f"{name}_op"


@contextlib.contextmanager
def sub_scope(config: MaskRCNNConfig, name: str) -> Iterator[None]:
    """Nothing in the Matterport naming; an extra `name/` scope level in the renamed variant."""
    if config.naming == "matterport":
        yield
        return
    import tensorflow as tf

    with tf.name_scope(name):
        yield


def backbone_names(config: MaskRCNNConfig, stage: int, block: int) -> dict[str, Any]:
    """Layer names of a residual block: Matterport's `res2a_branch2a` or Keras' `conv2_block1_1`."""
    if config.naming == "matterport":
        letter = chr(ord("a") + block)
        base = f"{stage}{letter}_branch"
        return {
            "conv": lambda part: f"res{base}{part}",
            "bn": lambda part: f"bn{base}{part}",
            "relu": lambda part: None,
            "add": None,
            "out": f"res{stage}{letter}_out",
        }
    base = f"conv{stage}_block{block + 1}"
    index = {"1": "0", "2a": "1", "2b": "2", "2c": "3"}
    return {
        "conv": lambda part: f"{base}_{index[part]}_conv",
        "bn": lambda part: f"{base}_{index[part]}_bn",
        "relu": lambda part: f"{base}_{index[part]}_relu",
        "add": f"{base}_add",
        "out": f"{base}_out",
    }
