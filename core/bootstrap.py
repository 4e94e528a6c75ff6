"""Process-wide settings, made once by each entry point (the command line, the tests, benchmarks) before the
frameworks load; importing a twinflow module changes nothing but the tf-keras switch (twinflow.core)."""

from __future__ import annotations

import os

from twinflow.core.package_index import scan_installed_packages_once


def bootstrap() -> None:
    """Idempotent; a user's own environment variables win."""
    scan_installed_packages_once()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines are noise here
    # On CPUs shared with other work, OpenMP's default spin-wait at every operator's barrier burns the
    # time slices its own late thread needs: on 2 shared cores that cut the torch twin's training 2-5x.
    # Passive waiting costs a few percent on idle cores. It takes effect only before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
