"""L2Norm_Surgery (surgery's own plugin): `x / sqrt(max(sum(x^2, axis), epsilon))`.

The same formula as `tf.math.l2_normalize`, so a rewrite of that op is numerically neutral.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, inputs_exactly


def l2norm(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """Normalise `x` to unit L2 norm along `axis`."""
    (x,) = inputs_exactly("L2Norm_Surgery", inputs, 1)
    axis = int(field("L2Norm_Surgery", fields, "axis"))
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise PluginReferenceError(f"L2Norm_Surgery: axis {axis} is out of range for {x.shape}")
    epsilon = fields.get("epsilon")
    eps = F32(1e-12 if epsilon is None else epsilon)
    square_sum = np.sum(x * x, axis=axis, keepdims=True, dtype=F32)
    return [(x / np.sqrt(np.maximum(square_sum, eps))).astype(F32)]
