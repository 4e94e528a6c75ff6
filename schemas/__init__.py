"""Curated schemas, reviewed like code. The default is Fashion-MNIST's."""

from importlib import resources
from pathlib import Path

from twinflow.core.packages import require_namespace

require_namespace(__name__)


def default_schema_path() -> Path:
    return Path(str(resources.files(__name__) / "fashion_mnist" / "schema.pbtxt"))
