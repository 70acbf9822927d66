"""Session-wide pytest fixtures: the frozen model fixtures (built once, cached on disk), and
surgery's result cache (surgery.cache) kept in a folder of the run's own, not the user's."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# Set before any test runs a command (subprocesses inherit it); a test may still override it.
if "SURGERY_CACHE_DIR" not in os.environ:
    os.environ["SURGERY_CACHE_DIR"] = tempfile.mkdtemp(prefix="surgery-test-cache-")
    atexit.register(shutil.rmtree, os.environ["SURGERY_CACHE_DIR"], ignore_errors=True)

from surgery import models
from surgery.models import FixtureInfo

NO_GPU = "no CUDA GPU / CuPy on this machine"


class FixtureInfos(Mapping[str, FixtureInfo]):
    """name -> FixtureInfo for the test fixtures, each built on first access only."""

    def __init__(self) -> None:
        """Nothing is built until asked for."""
        self._seen: dict[str, FixtureInfo] = {}

    def __getitem__(self, name: str) -> FixtureInfo:
        """The fixture's metadata, building it into the cache on first use."""
        if name not in self._seen:
            self._seen[name] = models.fixture_info(name)
        return self._seen[name]

    def __iter__(self) -> Iterator[str]:
        """The test fixtures' names."""
        return iter(models.TEST_FIXTURES)

    def __len__(self) -> int:
        """How many test fixtures there are."""
        return len(models.TEST_FIXTURES)


@pytest.fixture(scope="session")
def fixture_info() -> FixtureInfos:
    """Metadata (path, inputs, outputs) of every model fixture: `fixture_info["unet"].inputs`."""
    return FixtureInfos()


@pytest.fixture(scope="session")
def box3d_pb(fixture_info: FixtureInfos) -> Path:
    """The frozen 3D bounding-box net (LeakyRelu, l2_normalize, Reshape((bins, -1)))."""
    return fixture_info["box3d"].path


@pytest.fixture(scope="session")
def unet_pb(fixture_info: FixtureInfos) -> Path:
    """The frozen U-Net (FusedBatchNormV3, ResizeNearestNeighbor, ConcatV2)."""
    return fixture_info["unet"].path


@pytest.fixture(scope="session")
def resnet50_pb(fixture_info: FixtureInfos) -> Path:
    """The frozen ResNet50 at 1/8 width, 64x64 input."""
    return fixture_info["resnet50"].path


@pytest.fixture(scope="session")
def detector_pb(fixture_info: FixtureInfos) -> Path:
    """The frozen detector (Split/Unpack/TopKV2 ports, Conv2DBackpropInput, control edges)."""
    return fixture_info["detector"].path


@pytest.fixture(scope="session")
def cp() -> Any:
    """The cupy module for the GPU kernel tests, or skip the test when CuPy or a GPU is missing."""
    from plugins.gpu import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"{NO_GPU}: {reason}")
    import cupy

    return cupy
