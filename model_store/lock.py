"""The serving folder's lock: every push, rollback and promotion holds it, so no two change one folder at once.

Object stores have no create-if-absent, so a remote serving folder has no lock (``gs://``, ``s3://``: one
writer at a time is then the deployment's to arrange, e.g. one scheduled pipeline).
"""

from __future__ import annotations

import contextlib

from twinflow.core import fs
from twinflow.core.locks import BUSY, hold


def hold_serving_folder(serving_dir: str, busy: str = BUSY) -> contextlib.AbstractContextManager[object]:
    """Hold ``serving_dir``'s lock or refuse at once naming the holder (``busy`` words the refusal)."""
    return contextlib.nullcontext() if fs.is_remote(serving_dir) else hold(str(serving_dir), busy=busy)
