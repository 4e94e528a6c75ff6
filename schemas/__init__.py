"""Curated schemas, reviewed like code. The default is Fashion-MNIST's."""

from importlib import resources
from pathlib import Path


def default_schema_path() -> Path:
    return Path(str(resources.files("schemas") / "fashion_mnist" / "schema.pbtxt"))
