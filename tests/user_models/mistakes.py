"""Builders with the mistakes twinflow must name: a Keras 3 model, a wrong output shape, models that are not twins."""

import keras
from torch import nn


def build_keras(input_shape, num_classes):
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def build_torch(input_shape, num_classes):
    height, width, channels = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(height * width * channels, num_classes + 1))
