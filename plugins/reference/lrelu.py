"""LReLU_TRT: `x > 0 ? x : x * negSlope` elementwise (TensorRT's lReLU kernel), float32."""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, field, inputs_exactly


def lrelu(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """Leaky ReLU with slope `negSlope` below zero."""
    (x,) = inputs_exactly("LReLU_TRT", inputs, 1)
    slope = F32(field("LReLU_TRT", fields, "negSlope"))
    return [np.where(x > 0, x, x * slope).astype(F32)]
