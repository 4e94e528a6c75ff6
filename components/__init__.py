"""Custom TFX components (component.py + executor.py each); they depend only on core."""

import core  # noqa: F401  (selects tf-keras before TensorFlow loads)
