"""Exports torchvision's own detection models to ONNX (run by hand where torch AND torchvision
import, e.g. the GPU machine; CI has neither).

    python3 tests/data/onnx/make_detectors.py [OUT_DIR]

torchvision's FasterRCNN class, unchanged, with small backbones (a few Convs under
torchvision's FeaturePyramidNetwork) so the files stay small; random seeded weights.
Exported by the TorchScript exporter (`dynamo=False`), the path torchvision's own ONNX tests
take, so NMS and RoI align are ONNX NonMaxSuppression / RoiAlign nodes. Each export is checked
against the eager model with onnxruntime on a seeded image, and the file is written only if the
two agree. (torchvision's RetinaNet, exported the same way on the H100 of 2026-12-07, fails that
check: onnxruntime returned other detections than torch for all 30 of 30, so it is not here.)
"""

from __future__ import annotations

import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

HERE = Path(__file__).resolve().parent


def small_backbone(levels: int, width: int, out_channels: int, extra: nn.Module) -> nn.Module:
    """`levels` stride-2 Conv+ReLU stages after a stride-4 stem, each stage's output a level of
    torchvision's FPN (BackboneWithFPN, the class its resnet_fpn_backbone builds)."""
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())  # fmt: skip
    channels = [width]
    for i in range(1, levels):
        stages[f"c{i}"] = nn.Sequential(nn.Conv2d(channels[-1], width * 2**i, 3, 2, 1), nn.ReLU())
        channels.append(width * 2**i)
    body = nn.Sequential(stages)
    names = ["stem"] + [f"c{i}" for i in range(1, levels)]
    return BackboneWithFPN(body, {n: str(i) for i, n in enumerate(names)}, channels,
                           out_channels, extra_blocks=extra)  # fmt: skip


def faster_rcnn(levels: int, classes: int, size: tuple[int, int], pool: int, sampling: int,
                score: float, nms: float, per_image: int) -> nn.Module:  # fmt: skip
    """torchvision's FasterRCNN on `small_backbone`: RPN over every FPN level plus the max-pool
    level, MultiScaleRoIAlign over the FPN levels, TwoMLPHead and FastRCNNPredictor."""
    backbone = small_backbone(levels, 8, 16, LastLevelMaxPool())
    sizes = tuple((16 * 2**i,) for i in range(levels + 1))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    roi_pool = MultiScaleRoIAlign([str(i) for i in range(levels)], pool, sampling)
    return FasterRCNN(
        backbone, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
        box_head=TwoMLPHead(16 * pool * pool, 32), box_predictor=FastRCNNPredictor(32, classes),
        min_size=min(size), max_size=max(size), rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_test=60, box_score_thresh=score, box_nms_thresh=nms,
        box_detections_per_img=per_image,
    )  # fmt: skip


MODELS = [
    # file, model, image [C, H, W]
    ("tv_fasterrcnn_fpn2_op17.onnx", lambda: faster_rcnn(2, 5, (128, 128), 7, 2, 0.05, 0.5, 20),
     (3, 128, 128)),
    ("tv_fasterrcnn_fpn3_op16.onnx", lambda: faster_rcnn(3, 11, (160, 192), 5, 0, 0.1, 0.4, 25),
     (3, 160, 192)),
]  # fmt: skip


def detections(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[N, 6] rows (score, label, box) by descending score, then label and box: two runs that
    keep the same detections compare equal whatever order equal scores came out in."""
    rows = np.concatenate([scores[:, None], labels[:, None].astype(np.float32), boxes], axis=1)
    keys = rows.T * np.array([-1, 1, 1, 1, 1, 1])[:, None]  # score descending
    return rows[np.lexsort(keys[::-1])]  # lexsort's last key is the first criterion


def export(name: str, make, shape: tuple[int, int, int], out: Path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = make().eval()
    opset = int(name.rsplit("_op", 1)[1].split(".")[0])
    image = torch.rand(*shape)
    path = out / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, ([image],), str(path), opset_version=opset, dynamo=False,
                          input_names=["images"], output_names=["boxes", "labels", "scores"],
                          do_constant_folding=True)  # fmt: skip
        with torch.no_grad():
            want = model([image])[0]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": image.numpy()})
    ours = detections(*got)
    theirs = detections(*(want[key].numpy() for key in ("boxes", "labels", "scores")))
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-4, atol=1e-4):
        path.unlink()
        rows = (~np.isclose(ours, theirs, rtol=1e-4, atol=1e-4).all(axis=1)).sum() if (
            ours.shape == theirs.shape) else None  # fmt: skip
        raise SystemExit(f"{name}: onnxruntime's detections {ours.shape} differ from torch's "
                         f"{theirs.shape} ({rows} rows differ)")  # fmt: skip
    ops: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    print(f"{name}: {path.stat().st_size} bytes, {len(want['boxes'])} detections; "
          f"If x{ops.get('If', 0)}, RoiAlign x{ops.get('RoiAlign', 0)}, {sum(ops.values())} nodes")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    import torchvision

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
    for name, make, shape in MODELS:
        try:
            export(name, make, shape, out)
        except Exception as exc:  # report each model and go on to the next
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
