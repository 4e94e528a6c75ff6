"""The Keras (tf-keras) twin: model, data, train (``run_fn``), export (SavedModel), optimize (prune, int8)."""
