"""Draft a curated-style schema for your own image folders, to review and check in."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.image_example_gen.executor import list_sources
from pipelines.pipeline import default_schema_path


def draft_schema(data_dir: Path, out: Path) -> Path:
    """The Fashion-MNIST schema's constraints with this data's class list.

    The class list (and so the label range and the label_name domain) comes from the
    folders, exactly as ImageExampleGen will number them.
    """
    class_names, files = list_sources(str(data_dir))
    schema = schema_pb2.Schema()
    text_format.Parse(default_schema_path().read_text(), schema)
    for feature in schema.feature:
        if feature.name == "label":
            feature.int_domain.max = len(class_names) - 1
    for domain in schema.string_domain:
        if domain.name == "label_name":
            del domain.value[:]
            domain.value.extend(class_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Drafted by 'twinflow draft-schema' from {data_dir} ({len(files)} images, "
        f"{len(class_names)} classes). Review before checking in.\n"
    )
    out.write_text(header + text_format.MessageToString(schema))
    return out
