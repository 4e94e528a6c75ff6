"""Optimized variants: a Keras model, so the Keras twin's pruning and int8 TFLite apply unchanged."""

from twinflow.trainers.keras.optimize import make_variant

__all__ = ["make_variant"]
