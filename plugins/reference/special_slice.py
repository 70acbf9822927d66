"""SpecialSlice_TRT: the box (first four values: y1, x1, y2, x2) of each Mask R-CNN detection."""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, inputs_exactly


def special_slice(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """[N, K, 6] detections -> [N, K, 4] boxes."""
    (det,) = inputs_exactly("SpecialSlice_TRT", inputs, 1)
    if det.ndim < 2 or det.shape[-1] != 6:
        raise PluginReferenceError(
            f"SpecialSlice_TRT: detections have shape {det.shape}; expected [N, K, 6]"
        )
    return [np.ascontiguousarray(det[..., :4], dtype=F32)]
