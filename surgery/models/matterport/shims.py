"""Import Matterport's mrcnn (written for Keras 2.0 and TensorFlow 1.x) against tf-keras.

The fewest shims that let it build, nothing of Matterport's copied:

- a `keras` proxy delegating to tf-keras, with a `keras.engine.Layer` whose subclasses' outputs
  get the static shape `compute_output_shape` gives (old Keras did that through `_keras_shape`;
  without it `K.int_shape` in `fpn_classifier_graph` is None and the build fails). The proxy sits
  in `sys.modules` only while mrcnn imports, so Keras 3 stays importable as `keras`;
- TF1 names gone from TF 2.x (`tf.log`, `tf.sets.set_intersection`, `tf.sparse_tensor_to_dense`,
  `tf.random_shuffle`, `tf.to_float`), set only where absent: mrcnn calls them while building;
- empty stand-ins for `scipy`/`skimage` (imported by `mrcnn.utils`, unused by the graph) where
  they are not installed, removed from `sys.modules` again once mrcnn is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

_STAND_INS = {"scipy": ("scipy",), "skimage": ("skimage", "skimage.color", "skimage.io",
                                               "skimage.transform")}
_mrcnn: tuple[Any, Any] | None = None


def _patch_tensorflow(tf: Any) -> None:
    """The TF1 names mrcnn calls while building, where this TensorFlow lacks them."""

    def to_float(x: Any, name: str = "ToFloat") -> Any:
        """TF1's `tf.to_float`."""
        return tf.cast(x, tf.float32, name=name)

    for name, value in (
        ("log", tf.math.log),
        ("random_shuffle", tf.random.shuffle),
        ("sparse_tensor_to_dense", tf.sparse.to_dense),
        ("to_float", to_float),
    ):
        if not hasattr(tf, name):
            setattr(tf, name, value)
    if not hasattr(tf.sets, "set_intersection"):
        tf.sets.set_intersection = tf.sets.intersection


def _shaped(inner: Any) -> Any:
    """`inner` (a KE.Layer's `call`), its outputs given the static shape that
    `compute_output_shape` says, as Keras 2.0 did. Keras inspects the signature: keep it."""
    import tensorflow as tf

    def call(self: Any, inputs: Any) -> Any:
        out = inner(self, inputs)

        def shape(t: Any) -> tuple[int | None, ...]:
            return tuple(t.shape.as_list())

        ins = [shape(t) for t in inputs] if isinstance(inputs, list | tuple) else shape(inputs)
        want = self.compute_output_shape(ins)
        outs = out if isinstance(out, list | tuple) else [out]
        wants = want if isinstance(want, list) else [want]
        for tensor, dims in zip(outs, wants, strict=True):
            tensor.set_shape(tf.TensorShape(dims))  # merges with what TF knows
        return out

    call.__doc__ = inner.__doc__
    return call


def _keras_modules(tf_keras: Any) -> dict[str, types.ModuleType]:
    """The `keras`, `keras.engine`, `keras.backend/layers/models` modules mrcnn imports."""

    class Layer(tf_keras.layers.Layer):  # type: ignore[misc, name-defined]
        """Keras 2.0's `keras.engine.Layer` (output shapes from `compute_output_shape`)."""

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            if "call" in cls.__dict__:
                cls.call = _shaped(cls.__dict__["call"])

    keras = types.ModuleType("keras", "tf-keras seen as Keras 2 by mrcnn (surgery shim)")
    keras.__getattr__ = lambda name: getattr(tf_keras, name)  # type: ignore[method-assign]
    keras.__version__ = tf_keras.__version__  # type: ignore[attr-defined]
    engine = types.ModuleType("keras.engine")
    engine.Layer = Layer  # type: ignore[attr-defined]
    modules = {"keras": keras, "keras.engine": engine}
    for sub in ("backend", "layers", "models"):
        modules[f"keras.{sub}"] = getattr(tf_keras, sub)
    for sub in ("engine", "backend", "layers", "models"):
        setattr(keras, sub, modules[f"keras.{sub}"])
    return modules


@contextlib.contextmanager
def _modules_while(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """`modules` in `sys.modules` for the duration; what was there before is put back."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_mrcnn() -> tuple[Any, Any]:
    """(`mrcnn.model`, `mrcnn.config.Config`), imported once with the shims above."""
    global _mrcnn
    if _mrcnn is not None:
        return _mrcnn
    from surgery.passes.freeze import import_tf_keras

    tf_keras = import_tf_keras()
    import tensorflow as tf

    _patch_tensorflow(tf)
    temporary = _keras_modules(tf_keras)
    for top, names in _STAND_INS.items():
        if top not in sys.modules and importlib.util.find_spec(top) is None:
            temporary.update({name: types.ModuleType(name) for name in names})
    with _modules_while(temporary), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mrcnn imports distutils
        from mrcnn import config as mrcnn_config
        from mrcnn import model as modellib
    _mrcnn = (modellib, mrcnn_config.Config)
    return _mrcnn
