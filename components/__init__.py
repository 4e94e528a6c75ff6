"""Custom TFX components (component.py + executor.py each); they depend only on core."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
