"""bootstrap() makes the installed-package scan of Google Cloud's imports happen once."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from twinflow.core.package_index import scan_installed_packages_once


def test_google_cloud_imports_scan_the_installed_packages_once() -> None:
    # A fresh process, as the command line and the Kubeflow steps start: two Google client
    # packages each ask for the package index at import (google.api_core asks too).
    probe = (
        "from twinflow.core.bootstrap import bootstrap\n"
        "bootstrap()\n"
        "import json, google.api_core, google.pubsub_v1, google.cloud.bigquery_storage_v1\n"
        "from importlib import metadata\n"
        "info = metadata.packages_distributions.cache_info()\n"
        "print(json.dumps({'hits': info.hits, 'misses': info.misses}))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, check=True)
    calls = json.loads(result.stdout.strip().splitlines()[-1])
    assert calls["misses"] == 1 and calls["hits"] >= 2, calls


def test_memoizing_twice_keeps_one_cache() -> None:
    scan_installed_packages_once()
    memoized = metadata.packages_distributions
    scan_installed_packages_once()
    assert metadata.packages_distributions is memoized
    assert "tensorflow" in metadata.packages_distributions()
