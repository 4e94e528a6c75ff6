"""Draft a curated-style schema for your own image folders, to review and check in.

The draft is the Fashion-MNIST schema with this data's classes: the same constraints and the
same drift thresholds (calibrated on Fashion-MNIST), which its header lists for review.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from twinflow.components.image_example_gen.ingest import check_classes
from twinflow.components.image_example_gen.listing import list_sources
from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.schemas import default_schema_path


def draft_schema(data_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """The Fashion-MNIST schema's constraints with this data's class list.

    The class list (and so the label range and the label_name domain) comes from the
    folders, exactly as ImageExampleGen will number them. Folders a model could not learn
    from (fewer than 2 classes, a class without training images) are refused here already.
    The drift thresholds are copied as they are; the header names them, to review. An
    existing file at ``out`` may be a reviewed schema: it is replaced only with ``force``.
    """
    out = Path(out)
    _check_out(out, force)
    listing = list_sources(str(data_dir))
    class_names = listing.class_names
    check_classes(class_names, listing.class_counts(), str(data_dir))
    schema = read_schema(default_schema_path())
    for feature in schema.feature:
        if feature.name == "label":
            feature.int_domain.max = len(class_names) - 1
    for domain in schema.string_domain:
        if domain.name == "label_name":
            del domain.value[:]
            domain.value.extend(class_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Drafted by 'twinflow draft-schema' from {data_dir} ({len(listing.files)} images, "
        f"{len(class_names)} classes). Review before checking in.\n"
        "# Drift thresholds, copied from schemas/fashion_mnist/schema.pbtxt (calibrated there on subsets of\n"
        "# 2000 images; its comments give the measured distances). The drift gate stops a run above them:\n"
        + "".join(f"#   {line}\n" for line in drift_thresholds(schema))
        + "# Sampling noise alone grows as 1/sqrt(images): with a few hundred images per span, widen them.\n"
    )
    partial = out.with_name(f".{out.name}.partial")  # never a half-written schema under the final name
    partial.write_text(header + text_format.MessageToString(schema))
    partial.replace(out)
    return out


def _check_out(out: Path, force: bool) -> None:
    """Where the draft goes: not a folder, not under a file, and not over an existing schema unless forced."""
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the schema file, e.g. {out / 'schema.pbtxt'}")
    problem = fs.unwritable_local_folder(str(out.parent))
    if problem:
        raise ConfigError(f"--out {out} cannot be written ({problem})")
    if out.exists() and not force:
        raise ConfigError(
            f"--out {out} already exists (a reviewed schema?); pass --force to replace it, or choose another --out"
        )


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


def read_schema(schema_path: str | Path) -> schema_pb2.Schema:
    """A schema .pbtxt; a file that is missing, a folder, unreadable or not a Schema is a ConfigError naming it."""
    path = Path(schema_path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"schema {path} does not exist; pass --schema with a schema .pbtxt file") from None
    except IsADirectoryError:
        raise ConfigError(f"schema {path} is a folder; pass --schema with a schema .pbtxt file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"schema {path} cannot be read: {err}") from None
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as err:
        raise ConfigError(f"schema {path} is not a TFX schema in protobuf text format: line {err}") from None
    return schema


def schema_classes(schema_path: str | Path) -> list[str]:
    """The label_name domain of a schema: the classes it accepts."""
    schema = read_schema(schema_path)
    return [value for domain in schema.string_domain if domain.name == "label_name" for value in domain.value]
