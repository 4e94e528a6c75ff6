"""twinflow's shared core: the contracts, config, model card and file layer every layer uses.

Layers point one way: ``pipelines`` uses ``components`` and ``trainers``; those two use
only this package. Nothing here imports TensorFlow at import time, so the command line
can check a config before TensorFlow has loaded.

TFX 1.16, TFT and TFMA need tf-keras: it is selected here, before TensorFlow is imported,
and the installed-package scan that TFX's Google Cloud imports repeat is made once.
"""

import os

from core.package_index import scan_installed_packages_once

scan_installed_packages_once()

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow C++ INFO lines are noise here
