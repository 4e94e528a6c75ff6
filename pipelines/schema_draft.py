"""Draft a curated-style schema for your own image folders, to review and check in.

The draft is the Fashion-MNIST schema with this data's classes: the same constraints and the
same drift thresholds (calibrated on Fashion-MNIST), which its header lists for review.
"""

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
    The drift thresholds are copied as they are; the header names them, to review.
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
        "# Drift thresholds, copied from schemas/fashion_mnist/schema.pbtxt (calibrated there on subsets of\n"
        "# 2000 images; its comments give the measured distances). The drift gate stops a run above them:\n"
        + "".join(f"#   {line}\n" for line in drift_thresholds(schema))
        + "# Sampling noise alone grows as 1/sqrt(images): with a few hundred images per span, widen them.\n"
    )
    out.write_text(header + text_format.MessageToString(schema))
    return out


def drift_thresholds(schema: schema_pb2.Schema) -> list[str]:
    """One line per drift comparator of a schema: feature, measure, threshold."""
    lines = []
    for feature in schema.feature:
        comparator = feature.drift_comparator
        if comparator.HasField("infinity_norm"):
            lines.append(f"{feature.name}: L-infinity above {comparator.infinity_norm.threshold:g}")
        if comparator.HasField("jensen_shannon_divergence"):
            lines.append(
                f"{feature.name}: Jensen-Shannon divergence above {comparator.jensen_shannon_divergence.threshold:g}"
            )
        if comparator.HasField("normalized_abs_difference"):
            lines.append(
                f"{feature.name}: normalized difference above {comparator.normalized_abs_difference.threshold:g}"
            )
    if schema.dataset_constraints.HasField("num_examples_drift_comparator"):
        bounds = schema.dataset_constraints.num_examples_drift_comparator
        lines.append(
            f"train examples: below {bounds.min_fraction_threshold:g}x or above {bounds.max_fraction_threshold:g}x "
            "the served model's"
        )
    return lines


def schema_classes(schema_path: str | Path) -> list[str]:
    """The label_name domain of a schema: the classes it accepts."""
    schema = schema_pb2.Schema()
    text_format.Parse(Path(schema_path).read_text(), schema)
    return [value for domain in schema.string_domain if domain.name == "label_name" for value in domain.value]
