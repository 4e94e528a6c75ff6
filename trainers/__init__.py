"""TFX run_fn modules and the Transform preprocessing_fn; they depend only on core."""

import core  # noqa: F401  (selects tf-keras before TensorFlow loads)
