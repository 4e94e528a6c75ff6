"""One scan of the installed packages per process, however many libraries ask for it.

Each google-cloud client package (TFX imports a dozen through ``tfx.v1``: AI Platform,
BigQuery, Pub/Sub …) calls ``importlib.metadata.packages_distributions()`` at import to
word a Python-version notice. Every call rescans all installed distributions: about
0.35 s each here, some 5 s of every process that imports TFX. The installed packages do
not change while a process runs, so the answer is computed once.
"""

from __future__ import annotations

import functools
from importlib import metadata


def scan_installed_packages_once() -> None:
    """Memoize ``importlib.metadata.packages_distributions``; idempotent."""
    if not hasattr(metadata.packages_distributions, "cache_info"):
        metadata.packages_distributions = functools.cache(metadata.packages_distributions)
