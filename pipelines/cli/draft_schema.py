"""``twinflow draft-schema``: a draft schema inferred from your own image folders, to review and check in."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(verbs: argparse._SubParsersAction) -> None:
    draft = verbs.add_parser(
        "draft-schema", allow_abbrev=False, help="infer a draft schema from image folders, to review and check in"
    )
    draft.add_argument("--data-dir", type=Path, required=True, help="folder of class sub-folders of images")
    draft.add_argument("--out", type=Path, required=True, help="where to write the schema .pbtxt")
    draft.add_argument("--force", action="store_true", help="replace an existing file at --out (a reviewed schema)")
    draft.set_defaults(handler=draft_schema)


def draft_schema(args: argparse.Namespace) -> int:
    from twinflow.pipelines.schema_draft import draft_schema as write_draft

    path = write_draft(args.data_dir, args.out, force=args.force)
    print(f"draft schema written to {path}; review it, then pass it with --schema")
    return 0
