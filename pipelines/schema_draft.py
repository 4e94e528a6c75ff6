"""Draft a curated-style schema for your own image folders, to review and check in."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.image_example_gen.ingest import check_classes
from components.image_example_gen.listing import list_sources
from schemas import default_schema_path


def draft_schema(data_dir: str | Path, out: str | Path) -> Path:
    """The Fashion-MNIST schema's constraints with this data's class list.

    The class list (and so the label range and the label_name domain) comes from the
    folders, exactly as ImageExampleGen will number them. Folders a model could not learn
    from (fewer than 2 classes, a class without training images) are refused here already.
    """
    listing = list_sources(str(data_dir))
    class_names = listing.class_names
    check_classes(class_names, listing.class_counts(), str(data_dir))
    schema = schema_pb2.Schema()
    text_format.Parse(default_schema_path().read_text(), schema)
    for feature in schema.feature:
        if feature.name == "label":
            feature.int_domain.max = len(class_names) - 1
    for domain in schema.string_domain:
        if domain.name == "label_name":
            del domain.value[:]
            domain.value.extend(class_names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Drafted by 'twinflow draft-schema' from {data_dir} ({len(listing.files)} images, "
        f"{len(class_names)} classes). Review before checking in.\n"
    )
    out.write_text(header + text_format.MessageToString(schema))
    return out


def schema_classes(schema_path: str | Path) -> list[str]:
    """The label_name domain of a schema: the classes it accepts."""
    schema = schema_pb2.Schema()
    text_format.Parse(Path(schema_path).read_text(), schema)
    return [value for domain in schema.string_domain if domain.name == "label_name" for value in domain.value]
