"""Normalize_TRT: SSD's L2 normalisation of an NCHW map, then a per-channel (or shared) scale.

TensorRT: `acrossSpatial=0` divides each position's channel vector by `sqrt(sum_c x^2 + eps)`,
`acrossSpatial=1` divides each sample by `sqrt(sum_chw x^2 + eps)`. The result is multiplied by
`weights[0]` (`channelShared=1`) or `weights[c]`; except that TensorRT's across-spatial,
per-channel path *divides* by `weights[c]` (its `scalChannelKernel`), which is reproduced here so
that validation reports what the engine would compute.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, inputs_exactly, need_rank


def normalize(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """[N, C, H, W] -> same shape, normalised and scaled."""
    name = "Normalize_TRT"
    (x,) = inputs_exactly(name, inputs, 1)
    need_rank(name, "x", x, (4,))
    weights = np.asarray(field(name, fields, "weights"), dtype=F32).reshape(-1)
    across = bool(field(name, fields, "acrossSpatial"))
    shared = bool(field(name, fields, "channelShared"))
    eps = F32(field(name, fields, "eps"))
    channels = x.shape[1]
    if (shared and weights.size < 1) or (not shared and weights.size != channels):
        want = "1 weight" if shared else f"{channels} weights (one per channel)"
        raise PluginReferenceError(f"{name}: expected {want}, got {weights.size}")
    axes = (1, 2, 3) if across else (1,)
    norm = np.sqrt(np.sum(x * x, axis=axes, keepdims=True, dtype=F32) + eps)
    y = x / norm
    if shared:
        return [(y * weights[0]).astype(F32)]
    scale = weights.reshape(1, channels, 1, 1)
    return [(y / scale if across else y * scale).astype(F32)]
