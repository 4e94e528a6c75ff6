"""The pipeline layer: create_pipeline, runners, report and CLI (uses components, trainers and core)."""

import core  # noqa: F401  (selects tf-keras before TensorFlow loads)
