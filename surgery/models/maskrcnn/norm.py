"""Batch norm that uses its moving statistics, except while the fixture calibrates them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tf_keras as keras


class BatchNorm(keras.layers.BatchNormalization):
    """Matterport's inference batch norm: frozen statistics whatever the learning phase."""

    calibrating = False  # class-wide: True only inside `calibration()`

    def call(self, inputs: Any, training: Any = None) -> Any:
        """Normalize with the moving statistics (batch statistics while calibrating)."""
        return super().call(inputs, training=training if BatchNorm.calibrating else False)


@contextlib.contextmanager
def calibration() -> Iterator[None]:
    """Let every BatchNorm see `training=True` for the duration."""
    BatchNorm.calibrating = True
    try:
        yield
    finally:
        BatchNorm.calibrating = False
