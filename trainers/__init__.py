"""twinflow. TFX 1.16, TFT and TFMA need tf-keras: select it before TensorFlow is imported."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow C++ INFO lines are noise here
