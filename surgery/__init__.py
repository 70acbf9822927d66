"""surgery: declarative graph surgery that makes TensorFlow models deployable on TensorRT."""

import os

# Quiet TensorFlow's C++ logging and use the TF1-style tf-keras graphs real frozen models have;
# both only take effect if set before TensorFlow is imported, and a user's setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# The rule engine's hot modules run compiled when a current build exists (see surgery.native).
from surgery import native as _native  # noqa: E402

_native.select()
