"""The pipeline layer: the pipeline definition, the local runner, retraining, the report, Kubeflow and the command
line; the top layer, it uses every other package (tests/test_layering.py)."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
