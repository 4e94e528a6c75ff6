"""Model folders loaded for prediction, by the format their model.json names: SavedModel, ONNX, TFLite."""
