"""ResizeNearest_TRT: nearest upsampling of the last two axes by `scale` (NCHW).

TensorRT: output extent `int(extent * scale)`; output pixel `o` reads input `int(o / scale)`,
computed in float32 (no half-pixel offset).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, inputs_exactly


def _source_index(extent: int, scale: np.float32) -> np.ndarray:
    """Input index read by each output index along one axis."""
    out = int(F32(extent) * scale)
    if out < 1:
        raise PluginReferenceError(f"ResizeNearest_TRT: scale {scale} leaves an empty axis")
    index = (np.arange(out, dtype=F32) / scale).astype(np.int64)
    return np.minimum(index, extent - 1)


def resize_nearest(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """[..., H, W] -> [..., int(H*scale), int(W*scale)]."""
    (x,) = inputs_exactly("ResizeNearest_TRT", inputs, 1)
    if x.ndim < 2:
        raise PluginReferenceError(f"ResizeNearest_TRT: input has shape {x.shape}; need rank >= 2")
    scale = F32(field("ResizeNearest_TRT", fields, "scale"))
    if not scale > 0:
        raise PluginReferenceError(f"ResizeNearest_TRT: scale must be > 0, got {scale}")
    rows = _source_index(x.shape[-2], scale)
    cols = _source_index(x.shape[-1], scale)
    return [x[..., rows, :][..., cols]]
