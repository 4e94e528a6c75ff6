"""Pretrained-backbone twins: one network built alike in Keras and torch, weights ported between them.

``mobilenet_v2_spec`` holds what both twins share (no framework imported); ``keras_mobilenet_v2``
and ``torch_mobilenet_v2`` build the twins; ``port`` moves weights between a Keras and a torch
twin; ``weights`` resolves ``--weights`` (none, imagenet, a file, a model folder) for either.
"""
