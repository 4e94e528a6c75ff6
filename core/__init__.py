"""twinflow's shared core: the contracts, config, model card and file layer every layer uses.

Layers point one way (tests/test_layering.py); nothing here imports TensorFlow at import time,
so the command line can check a config before TensorFlow has loaded. Process-wide settings are
made by :func:`twinflow.core.bootstrap.bootstrap`, which entry points call.

The one import-time setting is the exception: TFX 1.16, TFT and TFMA need tf-keras, and the
switch (``TF_USE_LEGACY_KERAS``) must hold before TensorFlow is first imported in every process,
Beam workers and Kubeflow steps included, which run no entry point of ours. Every twinflow module
imports this package first, so it is set here (and in the image).
"""

import os

from twinflow.core.packages import require_namespace

require_namespace(__name__)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
