"""A stand-in for a Keras model built from plain TensorFlow ops, so that a fixture can have the
top-level namespaces of graphs that were not made with Keras (Object Detection API, TLT)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class GraphModel:
    """Quacks like a Keras model for `freeze_keras_model`: `inputs`, `output_names`, a call."""

    def __init__(
        self,
        fn: Callable[[Any], list[Any]],
        input_name: str,
        input_shape: tuple[int, ...],
        output_names: list[str],
        name: str,
    ):
        """`fn(x)` builds the graph from the input tensor and returns the output tensors."""
        import tensorflow as tf

        self.fn = fn
        self.name = name
        self.inputs = [tf.TensorSpec(input_shape, tf.float32, name=input_name)]
        self.output_names = list(output_names)

    def __call__(self, x: Any, training: bool = False) -> list[Any]:
        """The outputs, built inside the caller's graph with no enclosing name scope."""
        return self.fn(x)
