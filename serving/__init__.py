"""twinflow's model server and its deployment manifests.

Nothing is imported here, so that ``import serving`` (the image's import check, the manifest
writer) stays free of TensorFlow and the web stack.
"""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
