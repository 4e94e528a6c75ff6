"""TFX run_fn modules and the Transform preprocessing_fn; they depend only on core."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
