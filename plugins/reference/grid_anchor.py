"""GridAnchor_TRT: SSD prior boxes per feature-map layer, with their variances.

TensorRT: layer `i` of `L` has scale `s_i = minSize + (maxSize - minSize) * i / (L - 1)`.
Layer 0 uses only the first three aspect ratios with scales (0.1, s_0, s_0); every other layer
uses all ratios at `s_i` plus ratio 1 at `sqrt(s_i * s_{i+1})` (`s_L` = 1). A box is
`w = s * sqrt(r)`, `h = s / sqrt(r)` around the cell centre `((x + 0.5) / W, (y + 0.5) / H)`,
written as (xmin, ymin, xmax, ymax), ordered cell by cell (row-major) then box by box. Output
`i` is [2, H*W*boxes*4, 1]: the boxes, then the four variances repeated per box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field


def _layer_boxes(ratios: list[float], scales: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights of one layer's boxes."""
    root = np.sqrt(np.asarray(ratios, dtype=F32))
    scale = np.asarray(scales, dtype=F32)
    return scale * root, scale / root


def layer_sizes(fields: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(widths, heights) of the boxes of every layer."""
    name = "GridAnchor_TRT"
    layers = int(field(name, fields, "numLayers"))
    low, high = float(field(name, fields, "minSize")), float(field(name, fields, "maxSize"))
    ratios = [float(r) for r in field(name, fields, "aspectRatios")]
    if layers < 1 or len(ratios) < 3:
        raise PluginReferenceError(f"{name}: needs numLayers >= 1 and at least 3 aspectRatios")

    def scale(i: int) -> float:
        return low + (high - low) * i / (layers - 1) if layers > 1 else low

    sizes = []
    for i in range(layers):
        if i == 0:
            sizes.append(_layer_boxes(ratios[:3], [0.1, scale(0), scale(0)]))
        else:
            following = 1.0 if i == layers - 1 else scale(i + 1)
            extra = float(np.sqrt(scale(i) * following))
            sizes.append(_layer_boxes([*ratios, 1.0], [scale(i)] * len(ratios) + [extra]))
    return sizes


def grid_anchor(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """One [2, H*W*boxes*4, 1] prior tensor per layer (inputs, if any, are ignored)."""
    name = "GridAnchor_TRT"
    shapes = [int(s) for s in field(name, fields, "featureMapShapes")]
    variance = np.asarray(field(name, fields, "variance"), dtype=F32).reshape(-1)
    sizes = layer_sizes(fields)
    if len(shapes) != len(sizes) or variance.size != 4:
        raise PluginReferenceError(
            f"{name}: featureMapShapes has {len(shapes)} entries for {len(sizes)} layers "
            f"and variance {variance.size} values (need one per layer and 4)"
        )
    outputs = []
    for side, (widths, heights) in zip(shapes, sizes, strict=True):
        centres = (np.arange(side, dtype=F32) + F32(0.5)) * (F32(1.0) / F32(side))
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cx = cx.reshape(-1, 1)
        cy = cy.reshape(-1, 1)
        boxes = np.stack(
            [cx - F32(0.5) * widths, cy - F32(0.5) * heights,
             cx + F32(0.5) * widths, cy + F32(0.5) * heights], axis=-1,
        ).reshape(-1)  # fmt: skip
        variances = np.tile(variance, boxes.size // 4)
        outputs.append(np.stack([boxes, variances]).astype(F32).reshape(2, -1, 1))
    return outputs
