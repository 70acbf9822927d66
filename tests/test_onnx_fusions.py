"""rules/onnx_fusions.rules: LayerNorm and GELU subgraphs of real ONNX exports fused into ONNX's
LayerNormalization (opset 17) and Gelu (opset 20), checked by `surgery validate` (onnxruntime).

The PyTorch exports lie in tests/data/onnx/ (made by its make_models.py; CI has no torch). The
Keras models (a BERT-style encoder block and a small ViT, different widths and epsilons) are
converted here by tf2onnx at opsets 13 and 17; those tests are skipped without tf2onnx. A model
whose opset lacks the fused op is raised with onnx's version converter first, as a user would.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, version_converter

from surgery.cli import main

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "onnx_fusions.rules"
DATA = REPO / "tests" / "data" / "onnx"
SUBGRAPH_OPS = {"Erf", "Tanh", "Sqrt", "Reciprocal", "Pow", "GlobalAveragePool"}


def ops(path: Path) -> Counter[str]:
    """The op histogram of an ONNX model."""
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def nodes(path: Path, op: str) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == op]


def attr(node: onnx.NodeProto, name: str) -> object:
    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else None


def upgrade(src: Path, opset: int, out: Path) -> Path:
    """`src` raised to ai.onnx `opset` by onnx's version converter (which writes the Constants
    it makes, ReduceMean's axes from 18 on, with typed fields: the rules read those too)."""
    model = version_converter.convert_version(onnx.load(str(src)), opset)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def fuse(src: Path, out: Path, *extra: str) -> Path:
    """`surgery apply rules/onnx_fusions.rules`, then `surgery validate` of the result."""
    assert main(["apply", str(RULES), str(src), "-o", str(out), *extra]) == 0
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert main(["validate", str(src), str(out)]) == 0
    return out


def fuse_all(src: Path, tmp: Path) -> Path:
    """A model fused the way the rules' header says: raised to opset 17 where it is below (the
    LayerNorms fuse), then to 20 (the GELUs fuse); validated at each step."""
    opset = next(o.version for o in onnx.load(str(src)).opset_import if o.domain in ("", "ai.onnx"))
    if opset < 17:
        up = upgrade(src, 17, tmp / f"{src.stem}.op17.onnx")
        src = fuse(up, tmp / f"{src.stem}.ln.onnx")
    up = upgrade(src, 20, tmp / f"{src.stem}.op20.onnx")
    return fuse(up, tmp / f"{src.stem}.fused.onnx")


def test_rule_file_lints_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RULES)]) == 0
    assert "ok: 1 rule file(s), no problems found" in capsys.readouterr().out


# --------------------------------------------------------------------------- PyTorch exports
TORCH = {  # file stem: (LayerNorm subgraphs, GELU approximate, GELU subgraphs)
    "torch_encoder_ts_op14": (2, "none", 1),
    "torch_encoder_ts_op17": (0, "none", 1),
    "torch_encoder_dynamo_op18": (0, "none", 1),
    "torch_mlp_tanh_ts_op14": (1, "tanh", 1),
    "torch_mlp_tanh_ts_op17": (0, "tanh", 1),
    "torch_mlp_tanh_dynamo_op18": (0, "tanh", 1),
}


@pytest.mark.parametrize("stem", sorted(TORCH))
def test_pytorch_exports_fuse_into_native_nodes(stem: str, tmp_path: Path) -> None:
    """TorchScript and dynamo exports: every LayerNorm and GELU subgraph becomes one node, with
    the model's own epsilon, weight and bias; the fused model computes what the export does."""
    src = DATA / f"{stem}.onnx"
    layer_norms, approximate, gelus = TORCH[stem]
    before = ops(src)
    out = fuse_all(src, tmp_path)
    after = ops(out)
    assert after["LayerNormalization"] == before["LayerNormalization"] + layer_norms
    assert after["Gelu"] == gelus
    assert not after.keys() & SUBGRAPH_OPS - {"Sqrt"}  # Sqrt stays in the attention scaling
    assert all(attr(n, "approximate") == approximate.encode() for n in nodes(out, "Gelu"))
    for node in nodes(out, "LayerNormalization"):
        assert attr(node, "axis") == -1
        eps = 1e-5 if "encoder" in stem else 1e-6
        assert attr(node, "epsilon") == pytest.approx(eps, rel=1e-6)
        assert [i.split("/")[-1] for i in node.input[1:]] != []  # Scale and B from the model
    inits = {i.name for i in onnx.load(str(out)).graph.initializer}
    assert all(set(n.input[1:]) <= inits for n in nodes(out, "LayerNormalization"))


def test_reduce_mean_axes_as_an_input_are_read(tmp_path: Path) -> None:
    """Raised straight from opset 14 to 20, ReduceMean reads its axes from an input: the
    LayerNorm is still recognised, axes read from that Constant."""
    src = upgrade(DATA / "torch_mlp_tanh_ts_op14.onnx", 20, tmp_path / "op20.onnx")
    assert any(len(n.input) == 2 for n in nodes(src, "ReduceMean"))
    out = fuse(src, tmp_path / "fused.onnx")
    assert ops(out)["LayerNormalization"] == 1 and ops(out)["Gelu"] == 1
    assert not ops(out)["ReduceMean"]


def test_an_op_the_models_opset_lacks_is_not_emitted(tmp_path: Path) -> None:
    """Gelu needs opset 20, LayerNormalization 17: the rules read the model's opset, so on an
    opset-17 model the GELU subgraphs stay as they are, and on an opset-14 one everything does;
    the written models are valid."""
    src = DATA / "torch_encoder_ts_op17.onnx"
    out = tmp_path / "out.onnx"
    assert main(["apply", str(RULES), str(src), "-o", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert ops(out) == ops(src)
    low = DATA / "torch_mlp_tanh_ts_op14.onnx"
    assert main(["apply", str(RULES), str(low), "-o", str(out)]) == 0
    assert ops(out) == ops(low)


def test_look_alikes_are_left_alone(tmp_path: Path) -> None:
    """A normalisation over axis 1, an erf with x / 1.5, a tanh with 0.05 and a quarter-GELU:
    shaped like the fused subgraphs, none of them is; nothing changes, at opset 13 or 20."""
    src = DATA / "torch_lookalikes_ts_op13.onnx"
    for model in (src, upgrade(src, 20, tmp_path / "op20.onnx")):
        out = tmp_path / f"{model.stem}.out.onnx"
        assert main(["apply", str(RULES), str(model), "-o", str(out)]) == 0
        assert out.read_bytes() == model.read_bytes()


# --------------------------------------------------------------------------- Keras + tf2onnx
def _encoder(tf: object, width: int, eps: float) -> object:
    """A BERT-style post-norm encoder block; GELU written as BERT writes it (erf)."""
    keras = tf.keras  # type: ignore[attr-defined]
    x = inp = keras.Input((8, width), name="tokens")
    a = keras.layers.MultiHeadAttention(2, width // 2)(x, x)
    x = keras.layers.LayerNormalization(epsilon=eps, beta_initializer="random_uniform")(x + a)
    h = keras.layers.Dense(width * 2)(x)
    h = h * 0.5 * (1.0 + tf.math.erf(h / tf.sqrt(2.0)))  # type: ignore[attr-defined]
    x = keras.layers.LayerNormalization(epsilon=eps)(x + keras.layers.Dense(width)(h))
    return keras.Model(inp, x)


def _vit(tf: object, width: int, eps: float) -> object:
    """A two-block pre-norm ViT on 16x16 images, 4x4 patches; Dense + approximate gelu."""
    keras = tf.keras  # type: ignore[attr-defined]
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Reshape((16, width))(keras.layers.Conv2D(width, 4, strides=4)(inp))
    for _ in range(2):
        y = keras.layers.LayerNormalization(epsilon=eps)(x)
        x = x + keras.layers.MultiHeadAttention(2, width // 2)(y, y)
        y = keras.layers.LayerNormalization(epsilon=eps)(x)
        y = keras.layers.Dense(width * 2, activation=lambda t: tf.nn.gelu(t, approximate=True))(y)
        x = x + keras.layers.Dense(width)(y)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(epsilon=eps)(x))
    return keras.Model(inp, keras.layers.Dense(10)(x))


KERAS = {  # name: (builder, width, epsilon, LayerNorms, GELUs, approximate)
    "encoder": (_encoder, 32, 1e-6, 2, 1, "none"),
    "vit": (_vit, 48, 1e-5, 5, 2, "tanh"),
}


@pytest.fixture(scope="module")
def keras_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Each Keras model converted by tf2onnx at opsets 13 and 17."""
    tf = pytest.importorskip("tensorflow", reason="the Keras models need TensorFlow")
    tf2onnx = pytest.importorskip("tf2onnx", reason="the Keras models are converted by tf2onnx")
    root = tmp_path_factory.mktemp("keras_onnx")
    made = {}
    for name, (build, width, eps, *_) in KERAS.items():
        tf.random.set_seed(0)
        model = build(tf, width, eps)
        spec = [tf.TensorSpec((1, *t.shape[1:]), tf.float32, name=t.name.split(":")[0])
                for t in model.inputs]  # fmt: skip
        for opset in (13, 17):
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
            made[name, opset] = root / f"{name}_op{opset}.onnx"
            onnx.save(proto, str(made[name, opset]))
    return made


@pytest.mark.parametrize("name", sorted(KERAS))
def test_tf2onnx_exports_fuse_into_native_nodes(
    name: str, keras_onnx: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """tf2onnx writes Keras' LayerNormalization as moments + batch normalisation at both opsets
    (it does not fuse it at 17): at 17 the LayerNorms fuse (the model's epsilon, gamma, beta),
    raised to 20 the GELUs too; at 13 nothing fires."""
    _, _, eps, layer_norms, gelus, approximate = KERAS[name]
    src = keras_onnx[name, 17]
    assert not ops(src)["LayerNormalization"]
    ln = fuse(src, tmp_path / "ln.onnx")
    assert ops(ln)["LayerNormalization"] == layer_norms
    for node in nodes(ln, "LayerNormalization"):
        assert attr(node, "epsilon") == pytest.approx(np.float32(eps), rel=1e-6)
    out = fuse(upgrade(ln, 20, tmp_path / "op20.onnx"), tmp_path / "fused.onnx")
    after = ops(out)
    assert after["Gelu"] == gelus and not after.keys() & SUBGRAPH_OPS
    assert all(attr(n, "approximate") == approximate.encode() for n in nodes(out, "Gelu"))
    old = keras_onnx[name, 13]
    same = tmp_path / "op13.onnx"
    assert main(["apply", str(RULES), str(old), "-o", str(same)]) == 0
    assert ops(same) == ops(old)


def test_the_toy_detector_export_holds_nms_and_roi_align() -> None:
    """tests/data/onnx's detector (for NMS / RoiAlign rules to come): a dynamo export whose
    NonMaxSuppression and RoiAlign nodes onnxruntime runs; no rule here touches it."""
    import onnxruntime as ort

    path = DATA / "torch_toy_detector_dynamo_op18.onnx"
    assert {"NonMaxSuppression", "RoiAlign"} <= ops(path).keys()
    (roi,) = nodes(path, "RoiAlign")
    assert attr(roi, "output_height") == attr(roi, "output_width") == 7
    image = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    boxes, scores, probs = ort.InferenceSession(str(path)).run(None, {"image": image})
    assert boxes.shape[1:] == (4,) and probs.shape == (len(scores), 5)
