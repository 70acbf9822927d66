"""FlattenConcat_TRT: flatten each input per batch item and join them (SSD heads).

TensorRT copies each input's C*H*W values per batch item, one input after the other; the joined
axis is 1, 2 or 3 of a [N, 1, 1, 1]-shaped result. `ignoreBatch=1` treats the batch axis as data
(the whole tensor is flattened, output batch 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field


def flatten_concat(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """Inputs [N, ...] -> [N, total, 1, 1] (axis 1), [N, 1, total, 1] or [N, 1, 1, total]."""
    name = "FlattenConcat_TRT"
    if not inputs:
        raise PluginReferenceError(f"{name}: needs at least one input")
    axis = int(field(name, fields, "axis"))
    if axis not in (1, 2, 3):
        raise PluginReferenceError(f"{name}: axis must be 1, 2 or 3, got {axis}")
    ignore_batch = bool(field(name, fields, "ignoreBatch"))
    arrays = [np.asarray(x, dtype=F32) for x in inputs]
    if ignore_batch:
        parts = [x.reshape(1, -1) for x in arrays]
    else:
        batch = arrays[0].shape[0] if arrays[0].ndim else 1
        for i, x in enumerate(arrays):
            if x.ndim == 0 or x.shape[0] != batch:
                raise PluginReferenceError(
                    f"{name}: input {i} has shape {x.shape}; every input needs batch {batch}"
                )
        parts = [x.reshape(batch, -1) for x in arrays]
    joined = np.concatenate(parts, axis=1)
    shape = [joined.shape[0], 1, 1, 1]
    shape[axis] = joined.shape[1]
    return [joined.reshape(shape)]
