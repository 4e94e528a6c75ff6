"""Let AutoGraph leave tf-keras's own code alone, as it already does for the ``keras`` package.

TensorFlow 2.16's AutoGraph skips modules it knows to be graph code (``tensorflow``, ``keras``,
…) but not ``tf_keras``, the package TFX 1.16 needs Keras 2 from. So every ``tf.function``
that calls into tf-keras (Keras's train and test functions, the serving signatures) had
AutoGraph rewrite tf-keras's internals source file by source file: on 2 cores that took about
30 s before the first training step and 6 s more at export, for the same graph and results.
"""

from __future__ import annotations

TF_KERAS_PACKAGE = "tf_keras"


def skip_autograph_for_tf_keras() -> None:
    """Add a do-not-convert rule for tf-keras (idempotent; a no-op where AutoGraph has no rule list)."""
    from tensorflow.python.autograph.core import config as autograph_config

    rules = getattr(autograph_config, "CONVERSION_RULES", None)
    skip = autograph_config.DoNotConvert
    if rules is None or any(isinstance(rule, skip) and rule.matches(TF_KERAS_PACKAGE) for rule in rules):
        return
    autograph_config.CONVERSION_RULES = (skip(TF_KERAS_PACKAGE), *rules)
