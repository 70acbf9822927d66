"""The opset-20 copies of two PyTorch exports that rules/cases/onnx_fusions.toml runs on: made
from the opset-14 files by onnx's version converter (no torch needed). Run by hand from the
repository root: `python tests/data/onnx/upgrade_models.py`."""

from pathlib import Path

import onnx
from onnx import version_converter

HERE = Path(__file__).resolve().parent


def main() -> None:
    for name in ("torch_encoder_ts_op14", "torch_mlp_tanh_ts_op14"):
        model = version_converter.convert_version(onnx.load(str(HERE / f"{name}.onnx")), 20)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(HERE / f"{name}_to20.onnx"))


if __name__ == "__main__":
    main()
