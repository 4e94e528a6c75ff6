"""The pipeline layer: create_pipeline, runners, report and CLI (uses components, trainers and core)."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
