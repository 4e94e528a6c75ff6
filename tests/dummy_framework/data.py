"""The Transform output as Keras reads it: this framework is a Keras model, so it reads it as the Keras twin does."""

from twinflow.trainers.keras.data import read_splits

__all__ = ["read_splits"]
