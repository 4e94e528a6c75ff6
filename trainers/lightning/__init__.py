"""The PyTorch Lightning twin: model, data, train (``run_fn``), export (ONNX), optimize (prune, int8)."""
