"""Model fixtures: real architectures built in tf-keras, randomised, frozen once and cached.

`fixture_path("unet")` returns the frozen `.pb` (building it on first use) and `fixture_info`
says how to feed it. Builds are keyed by the builder's source, the freezing code and the
TensorFlow/tf-keras versions, so an edit to a builder rebuilds it; two processes building the
same fixture at once both write identical bytes atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from surgery.errors import SurgeryError
from surgery.ir.atomic_files import write_atomic
from surgery.passes.freeze import TensorSpecInfo

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
CACHE_ENV = "SURGERY_FIXTURE_CACHE"


@dataclass(frozen=True)
class FixtureSpec:
    """How to build one fixture: `module.build(**params)` returns a tf-keras model."""

    name: str
    module: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    # Other files (relative to surgery/models/) the builder uses: part of the cache key.
    extra_sources: tuple[str, ...] = ()
    # Distributions (besides TensorFlow and tf-keras) whose versions are part of the cache key.
    dists: tuple[str, ...] = ()


@dataclass(frozen=True)
class FixtureInfo:
    """A built fixture: where its `.pb` is, how to feed it, which tensors it answers with."""

    name: str
    path: Path
    inputs: tuple[TensorSpecInfo, ...]
    outputs: tuple[str, ...]  # tensor names in the frozen graph ("Identity:0", ...)
    output_keys: tuple[str, ...]  # the Keras output layer names, same order
    nodes: int
    size: int
    build_seconds: float
    key: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready metadata (without the path, which is where the JSON lies)."""
        return {
            "name": self.name,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": list(self.outputs),
            "output_keys": list(self.output_keys),
            "nodes": self.nodes,
            "size": self.size,
            "build_seconds": self.build_seconds,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> FixtureInfo:
        """The inverse of `to_json`, given the `.pb` path."""
        return cls(
            name=data["name"],
            path=path,
            inputs=tuple(TensorSpecInfo.from_json(s) for s in data["inputs"]),
            outputs=tuple(data["outputs"]),
            output_keys=tuple(data["output_keys"]),
            nodes=int(data["nodes"]),
            size=int(data["size"]),
            build_seconds=float(data["build_seconds"]),
            key=data["key"],
        )


FIXTURES: dict[str, FixtureSpec] = {
    spec.name: spec
    for spec in (
        FixtureSpec(
            "box3d",
            "surgery.models.box3d",
            "3D bounding-box net: VGG-style backbone, Flatten->Dense, LeakyReLU 0.1, "
            "Reshape((bin_num, -1)) + l2_normalize orientation head",
        ),
        FixtureSpec(
            "unet",
            "surgery.models.unet",
            "small U-Net with BatchNorm and UpSampling2D nearest (ResizeNearestNeighbor)",
        ),
        FixtureSpec(
            "resnet50",
            "surgery.models.resnet50",
            "ResNet50 topology (3-4-6-3 bottlenecks, FusedBatchNormV3) at 1/8 width, 64x64 input",
        ),
        FixtureSpec(
            "detector",
            "surgery.models.detector",
            "detector head: Conv2DTranspose, Split/Unpack/TopKV2 read at :1/:2, Assert + "
            "control edges, name scopes",
        ),
        FixtureSpec(
            "resnet50_full",
            "surgery.models.resnet50",
            "full-width ResNet50, 224x224 input, 1000 classes (benchmarks; ~100 MB)",
            {"width": 1.0, "input_size": 224, "classes": 1000},
        ),
        FixtureSpec(
            "keras3_upsample",
            "surgery.models.keras3_upsample",
            "Keras 3 (not tf-keras) encoder/decoder: UpSampling2D as ExpandDims/Tile/Reshape, "
            "LeakyReLU",
        ),
        FixtureSpec(
            "ssd_like",
            "surgery.models.ssd_like",
            "SSD-like detector with the Object Detection API namespaces (Preprocessor, "
            "MultipleGridAnchorGenerator, BoxPredictor_i, concat, concat_1, Postprocessor)",
            extra_sources=("graph_model.py",),
        ),
        FixtureSpec(
            "faster_rcnn_like",
            "surgery.models.faster_rcnn_like",
            "Faster R-CNN-like head: RPN, `proposal` namespace (decode, top-k, NMS), "
            "`roi_pooling_conv_1` crop_and_resize, dense heads",
            extra_sources=("graph_model.py",),
        ),
        # Other configurations of the two detector families (rules/ssd.rules and
        # rules/faster_rcnn.rules read their plugin fields from the graph; the `_anchors`
        # variants change what only a rule-file param gives: the anchor configuration).
        *(
            FixtureSpec(
                f"ssd_like_{name}",
                "surgery.models.ssd_like",
                f"SSD-like detector, another configuration: {text}",
                params,
                extra_sources=("graph_model.py",),
            )
            for name, text, params in (
                (
                    "b",
                    "96x96 (feature maps 12, 6), 5 classes, NMS 20 per class / 15 in all, "
                    "IoU 0.5, score 0.25",
                    {"input_size": 96, "num_classes": 5, "max_per_class": 20, "max_total": 15,
                     "iou_threshold": 0.5, "score_threshold": 0.25},
                ),
                (
                    "l2norm",
                    "SSD300's conv4_3_norm on the first feature map: l2_normalize over the "
                    "channels times a learned per-channel scale (about 20), read by BoxPredictor_0",
                    {"l2norm_scale": 20.0},
                ),
                (
                    "anchors",
                    "anchor scales 0.15..0.6, aspect ratios 1, 2, 0.5, 3 (5 boxes a cell)",
                    {"min_scale": 0.15, "max_scale": 0.6, "aspect_ratios": [1.0, 2.0, 0.5, 3.0]},
                ),
            )
        ),
        *(
            FixtureSpec(
                f"faster_rcnn_like_{name}",
                "surgery.models.faster_rcnn_like",
                f"Faster R-CNN-like head, another configuration: {text}",
                params,
                extra_sources=("graph_model.py",),
            )
            for name, text, params in (
                (
                    "b",
                    "96x96, 128 pre-NMS, 24 post-NMS, IoU 0.6, min ROI 2, pool 5, 6 classes",
                    {"input_size": 96, "pre_nms": 128, "post_nms": 24, "iou_threshold": 0.6,
                     "roi_min_size": 2.0, "pool": 5, "classes": 6},
                ),
                (
                    "anchors",
                    "anchor sizes 8, 16, 32 x ratios 0.5, 1, 2 (9 anchors a cell)",
                    {"anchor_sizes": [8.0, 16.0, 32.0], "anchor_ratios": [0.5, 1.0, 2.0]},
                ),
            )
        ),
        *(
            FixtureSpec(
                f"maskrcnn_{name}",
                "surgery.models.maskrcnn",
                f"Mask R-CNN (Matterport inference graph, ROI/roi_align_*/mrcnn_detection): {text}",
                params,
            )
            for name, text, params in (
                (
                    "small_nchw",
                    "ResNet50 at 1/8 width, 128x128, NCHW as TensorRT's guide; StatelessWhile",
                    {"config": "small", "data_format": "channels_first"},
                ),
                (
                    "small_nhwc",
                    "small, NHWC (Matterport's original layout)",
                    {"config": "small", "data_format": "channels_last"},
                ),
                (
                    "small_tf1cf",
                    "small NCHW, TF1 control flow (Enter/Exit/Merge/Switch) in mrcnn_detection",
                    {"config": "small", "data_format": "channels_first", "control_flow": "v1"},
                ),
                (
                    "small_renamed",
                    "small NCHW, other inner node names and sub-scopes, same layer scopes",
                    {"config": "small", "data_format": "channels_first", "naming": "renamed"},
                ),
                (
                    "full_nchw",
                    "ResNet101, 1024x1024, 81 classes, 1000 proposals, NCHW (benchmarks)",
                    {"config": "full", "data_format": "channels_first"},
                ),
            )
        ),
        *(
            FixtureSpec(
                f"matterport_{name}",
                "surgery.models.matterport",
                f"Matterport's own Mask R-CNN code (mrcnn-colab), inference mode: {text}",
                params,
                extra_sources=("maskrcnn/fixture.py",),
                dists=("mrcnn-colab",),
            )
            for name, text, params in (
                (
                    "small",
                    "ResNet50, 128x128, 4 classes, 256 pre-NMS, 64 ROIs, 16 detections; "
                    "StatelessWhile",
                    {"config": "small"},
                ),
                (
                    "small_tf1cf",
                    "small, same weights, TF1 control flow (Enter/Exit/Merge/Switch)",
                    {"config": "small", "control_flow": "v1"},
                ),
                (
                    "medium",
                    "ResNet101, 192x192, 7 classes, 1500 pre-NMS (above TensorRT's 1024), "
                    "100 ROIs, 20 detections, pool 5 / mask pool 10; StatelessWhile",
                    {"config": "medium"},
                ),
                (
                    "coco",
                    "Matterport's COCO config: ResNet101, 1024x1024, 81 classes (benchmarks)",
                    {"config": "coco"},
                ),
            )
        ),
    )
}

# The Mask R-CNN fixtures the tests build (`maskrcnn_full_nchw` is for benchmarks only).
MASKRCNN_TEST_FIXTURES = (
    "maskrcnn_small_nchw",
    "maskrcnn_small_nhwc",
    "maskrcnn_small_tf1cf",
    "maskrcnn_small_renamed",
)

# The Matterport fixtures the tests build (`matterport_coco` is for benchmarks only).
MATTERPORT_TEST_FIXTURES = ("matterport_small", "matterport_small_tf1cf", "matterport_medium")

# The fixtures the test-suite uses (small and quick to build); `resnet50_full` is for benchmarks.
TEST_FIXTURES = ("box3d", "unet", "resnet50", "detector")


def default_cache_dir() -> Path:
    """`$SURGERY_FIXTURE_CACHE` if set, else `<repo>/.fixture_cache/`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else REPO_ROOT / ".fixture_cache"


def _spec(name: str) -> FixtureSpec:
    """The registered spec called `name`, or an error listing the known ones."""
    spec = FIXTURES.get(name)
    if spec is None:
        raise SurgeryError(f"unknown model fixture {name!r} (known: {', '.join(FIXTURES)})")
    return spec


def _version(*dists: str) -> str:
    """The installed version of the first of `dists` that is installed, else '-'."""
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "-"


def _module_sources(module: str) -> list[Path]:
    """The builder's source files: `x.py`, or every `.py` of package `x/` (sorted)."""
    relative = module.split(".")[2:]  # "surgery.models.x[.y]" -> ["x", "y"]
    base = PACKAGE_DIR.joinpath(*relative)
    if base.is_dir():
        return sorted(base.rglob("*.py"))
    return [base.with_suffix(".py")]


def cache_key(name: str) -> str:
    """Hash of what decides the bytes: builder, weights and freeze sources, params, versions."""
    spec = _spec(name)
    digest = hashlib.sha256()
    sources = _module_sources(spec.module)
    sources += [PACKAGE_DIR / "weights.py", PACKAGE_DIR.parent / "passes" / "freeze.py"]
    sources += [PACKAGE_DIR / extra for extra in spec.extra_sources]
    for source in sources:
        digest.update(source.read_bytes())
    digest.update(json.dumps(spec.params, sort_keys=True).encode())
    digest.update(_version("tensorflow-cpu", "tensorflow").encode())
    digest.update(_version("tf-keras", "tf_keras").encode())
    for dist in spec.dists:  # none for most fixtures: their keys stay as they were
        digest.update(f"{dist}={_version(dist)}".encode())
    digest.update(b"fixture-format-1")
    return digest.hexdigest()[:16]


def _paths(name: str, cache_dir: Path) -> tuple[Path, Path]:
    """(`.pb`, `.json`) cache paths of fixture `name`."""
    stem = f"{name}-{cache_key(name)}"
    return cache_dir / f"{stem}.pb", cache_dir / f"{stem}.json"


def build_model(name: str) -> Any:
    """The randomised tf-keras model of fixture `name` (imports TensorFlow)."""
    from surgery.passes.freeze import import_tf_keras

    import_tf_keras()
    spec = _spec(name)
    return importlib.import_module(spec.module).build(**spec.params)


def build(name: str, cache_dir: str | os.PathLike | None = None) -> FixtureInfo:
    """Build and freeze fixture `name` now (even if cached) and write `.pb` then `.json`."""
    import time

    from surgery.ir.model_io import serialize
    from surgery.passes.freeze import freeze_keras_model, import_tf_keras

    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pb_path, json_path = _paths(name, directory)
    import_tf_keras()  # not part of the build time
    start = time.perf_counter()
    spec = _spec(name)
    custom = getattr(importlib.import_module(spec.module), "freeze_model", None)
    # A builder module may freeze itself (e.g. in a TF1 graph); it gets the fixture's params.
    frozen = custom(name, **spec.params) if custom else freeze_keras_model(build_model(name), name)
    data = serialize(frozen.graph_def, text=False)
    seconds = round(time.perf_counter() - start, 2)
    info = FixtureInfo(
        name=name,
        path=pb_path,
        inputs=tuple(frozen.inputs),
        outputs=tuple(frozen.outputs),
        output_keys=tuple(frozen.output_keys),
        nodes=len(frozen.graph_def.node),
        size=len(data),
        build_seconds=seconds,
        key=cache_key(name),
    )
    write_atomic(pb_path, data)
    # The JSON is written last: its presence means the `.pb` beside it is complete.
    write_atomic(json_path, (json.dumps(info.to_json(), indent=1) + "\n").encode())
    _drop_stale(name, directory, pb_path.stem)
    return info


def _drop_stale(name: str, directory: Path, keep: str) -> None:
    """Remove this fixture's builds under other keys (older builder sources or TF versions)."""
    for path in directory.glob(f"{name}-*"):
        stem = path.name.split(".", 1)[0]
        key = stem[len(name) + 1 :]
        if stem != keep and len(key) == 16 and all(c in "0123456789abcdef" for c in key):
            path.unlink(missing_ok=True)


def fixture_info(name: str, cache_dir: str | os.PathLike | None = None) -> FixtureInfo:
    """Metadata of fixture `name`, building it first if the cache lacks it."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    pb_path, json_path = _paths(name, directory)
    if json_path.exists() and pb_path.exists():
        try:
            return FixtureInfo.from_json(json.loads(json_path.read_text()), pb_path)
        except (ValueError, KeyError, TypeError):
            pass  # a stale or foreign file: rebuild it
    return build(name, directory)


def fixture_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The frozen `.pb` of fixture `name`, built once into the cache directory."""
    return fixture_info(name, cache_dir).path


__all__ = [
    "FIXTURES",
    "TEST_FIXTURES",
    "FixtureInfo",
    "FixtureSpec",
    "MASKRCNN_TEST_FIXTURES",
    "MATTERPORT_TEST_FIXTURES",
    "build",
    "build_model",
    "cache_key",
    "default_cache_dir",
    "fixture_info",
    "fixture_path",
]
