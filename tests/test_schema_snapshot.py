"""The schema ImportSchemaGen reads is named by its content, so an edited schema is never answered from the cache."""

from pathlib import Path

from twinflow.core.config import load_config
from twinflow.pipelines.run.local import schema_snapshot


def test_the_snapshot_path_changes_exactly_when_the_schema_does(tmp_path: Path) -> None:
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "label" type: INT }\n')
    config = load_config(overrides={"schema_path": str(schema), "pipeline_root": str(tmp_path / "pipeline")})
    first = schema_snapshot(config)
    assert Path(first).read_text() == schema.read_text() and Path(first).parent == tmp_path / "pipeline" / "schemas"
    assert schema_snapshot(config) == first  # same content, same path: ImportSchemaGen stays cached
    schema.write_text('feature { name: "label" type: INT }\nfeature { name: "image" type: BYTES }\n')
    second = schema_snapshot(config)
    assert second != first and Path(second).read_text() == schema.read_text()
    assert Path(first).exists() and not list(Path(first).parent.glob("*.partial"))
