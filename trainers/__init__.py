"""The trainers: one folder per framework with the same five files, and what they share.

- ``keras/``, ``lightning/``: model, data, train (TFX's ``run_fn``), export, optimize;
- ``base.py``: the ``run_fn`` skeleton both follow (data → fit → evaluate → export → model card);
- ``formats/``: model folders loaded for prediction by their card's format (SavedModel, ONNX, TFLite);
- ``preprocessing.py`` (the one ``preprocessing_fn``), ``transformed_data.py`` (Transform output under a
  memory budget), ``custom_evaluation.py`` (TFMA hooks), ``variants.py`` and ``latency.py`` (optimized
  variants), ``backbones/`` (pretrained backbones built as exact twins).
"""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
