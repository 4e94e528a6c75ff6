"""A user's own small CNN, built the same in both frameworks: conv 8 → max-pool → flatten → dense logits."""

import tf_keras as keras
import torch
from torch import nn

FILTERS = 8


def build_keras(input_shape, num_classes):
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def build_torch(input_shape, num_classes):
    height, width, channels = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, FILTERS, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(FILTERS * (height // 2) * (width // 2), num_classes),
    ).to(memory_format=torch.channels_last)
