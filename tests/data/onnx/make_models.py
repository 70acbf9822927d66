"""Makes the PyTorch-exported ONNX models in this folder (run by hand; CI has no torch).

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 onnx onnxscript   # torch 2.13.0+cpu
    /tmp/torchvenv/bin/python tests/data/onnx/make_models.py

Random weights (seeded), float32, batch 1. See README.md for what each model holds.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class Encoder(nn.Module):
    """One post-norm transformer encoder layer with GELU (exact), as BERT-style models have."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            d_model=32, nhead=2, dim_feedforward=64, dropout=0.0, activation="gelu",
            layer_norm_eps=1e-5, batch_first=True,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class TanhMlp(nn.Module):
    """Pre-norm MLP block: LayerNorm (eps 1e-6, width 24), Linear, GELU (tanh), Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(24, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(24, 48), nn.GELU("tanh"), nn.Linear(48, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class LookAlikes(nn.Module):
    """Subgraphs shaped like LayerNorm / GELU that are not: the rules must leave them alone."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(16) + 0.5)
        self.bias = nn.Parameter(torch.rand(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [1, 16, 16]
        # normalised over axis 1, not the last one
        m = x.mean(1, keepdim=True)
        d = x - m
        a = d / torch.sqrt((d**2).mean(1, keepdim=True) + 1e-5) * self.weight + self.bias
        # erf "gelu" with x / 1.5 instead of x / sqrt(2)
        b = a * (torch.erf(a / 1.5) + 1.0) * 0.5
        # tanh "gelu" with 0.05 instead of 0.044715
        k = math.sqrt(2.0 / math.pi)
        c = 0.5 * b * (1.0 + torch.tanh(k * (b + 0.05 * torch.pow(b, 3))))
        # 0.25 * x * (1 + erf(x / sqrt(2))): half of GELU
        return c * (torch.erf(c / math.sqrt(2.0)) + 1.0) * 0.25


def trained_look(model: nn.Module) -> None:
    """LayerNorm weights and biases away from their init (ones, zeros), as in a trained model:
    the exporter writes equal initializers once and the others as Identity nodes of it."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def export(model: nn.Module, shape: tuple[int, ...], name: str, opset: int, dynamo: bool) -> None:
    torch.manual_seed(0)
    path = HERE / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.randn(*shape),), str(path), input_names=["x"],
            output_names=["y"], opset_version=opset, dynamo=dynamo,
        )  # fmt: skip
    proto = onnx.load(str(path))  # the dynamo exporter writes weights beside: keep one file
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    onnx.save(proto, str(path))
    print(name, path.stat().st_size, "bytes")


# --------------------------------------------------------------------------- a toy detector
# NMS and RoiAlign as custom torch ops (torchvision from PyPI cannot load its ops next to the CPU
# torch wheel: its _C.so links libtorch_cuda.so), exported by the dynamo exporter through
# onnxscript's translations of torchvision::nms / torchvision::roi_align, so the ONNX model has
# the NonMaxSuppression and RoiAlign nodes a torchvision detector exports.
@torch.library.custom_op("toydet::nms", mutates_args=())
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over [N, 4] (x1, y1, x2, y2) boxes: the kept indices, best score first."""
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    alive = torch.ones(len(order), dtype=torch.bool)
    keep = []
    for rank, i in enumerate(order.tolist()):
        if alive[rank]:
            keep.append(i)
            rest = order[rank + 1 :]
            w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
            alive[rank + 1 :] &= w * h / (area[i] + area[rest] - w * h) <= iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


@nms.register_fake
def _nms_fake(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return boxes.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.int64)


@torch.library.custom_op("toydet::roi_align", mutates_args=())
def roi_align(
    x: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
    pooled_width: int, sampling_ratio: int, aligned: bool,
) -> torch.Tensor:  # fmt: skip
    """torchvision.ops.roi_align's signature; the eager result is a stand-in (zeros): only the
    export, where it is ONNX RoiAlign, matters here."""
    return x.new_zeros((rois.shape[0], x.shape[1], pooled_height, pooled_width))


@roi_align.register_fake
def _roi_align_fake(
    x: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
    pooled_width: int, sampling_ratio: int, aligned: bool,
) -> torch.Tensor:  # fmt: skip
    return x.new_empty((rois.shape[0], x.shape[1], pooled_height, pooled_width))


class ToyDetector(nn.Module):
    """Two-conv backbone (stride 4), a box and objectness head per cell, NMS (IoU 0.5, top 20),
    RoiAlign 7x7 of the kept boxes on the feature map, a 5-class classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU()
        )
        self.box, self.obj, self.cls = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 1, 1), nn.Linear(1568, 5)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = self.backbone(image)
        d = self.box(f).flatten(2)[0].t()
        xy, wh = d[:, :2].sigmoid() * image.shape[-1], d[:, 2:].exp() * 8
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1)
        scores = self.obj(f).flatten()
        keep = torch.ops.toydet.nms(boxes, scores, 0.5)[:20]
        rois = torch.cat([torch.zeros_like(boxes[keep][:, :1]), boxes[keep]], 1)
        pooled = torch.ops.toydet.roi_align(f, rois, 0.25, 7, 7, 2, True)
        return boxes[keep], scores[keep], self.cls(pooled.flatten(1)).softmax(-1)


def export_detector() -> None:
    from onnxscript.function_libs.torch_lib.ops import vision

    torch.manual_seed(0)
    path = HERE / "torch_toy_detector_dynamo_op18.onnx"
    table = {
        torch.ops.toydet.nms.default: vision.torchvision_nms,
        torch.ops.toydet.roi_align.default: vision.torchvision_roi_align,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ToyDetector().eval(), (torch.rand(1, 3, 64, 64),), str(path), dynamo=True,
            opset_version=18, input_names=["image"],
            output_names=["boxes", "scores", "class_probs"], custom_translation_table=table,
        )  # fmt: skip
    proto = onnx.load(str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    onnx.save(proto, str(path))
    print(path.name, path.stat().st_size, "bytes")


def main() -> None:
    for cls, shape, stem in ((Encoder, (1, 8, 32), "encoder"), (TanhMlp, (1, 6, 24), "mlp_tanh")):
        for opset, dynamo in ((14, False), (17, False), (18, True)):
            torch.manual_seed(1)
            model = cls()
            trained_look(model)
            kind = "dynamo" if dynamo else "ts"
            export(model, shape, f"torch_{stem}_{kind}_op{opset}.onnx", opset, dynamo)
    torch.manual_seed(2)
    export(LookAlikes(), (1, 16, 16), "torch_lookalikes_ts_op13.onnx", 13, False)
    export_detector()


if __name__ == "__main__":
    main()
